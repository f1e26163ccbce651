-- One typed row per exported line. Parsing only: each line is split into its fields here (the
-- source is the lines as written, see _ab_test__sources.yml), the header (export_columns(): var
-- export_columns, else the file's first line) says which field is which, values that do not
-- parse become NULL, and int_events__validated judges them (kept or quarantined with a reason).
-- Incremental by file (export_file_plan): a nightly run parses only the files not staged yet or
-- changed since, after the pre-hook has dropped the rows of changed and no longer given files.
-- Lines the reader cannot take at all are kept by DuckDB's store_rejects; the post-hook saves
-- them (same connection) for stg_ab_test__unreadable_lines.
{{ config(
    materialized='incremental' if target.type == 'duckdb' else 'table',
    incremental_strategy='append',
    on_schema_change='fail',
    pre_hook="{{ unstage_files(export_file_plan()) }}",
    post_hook="{{ save_reader_rejects(this.schema) }}",
) }}
{%- set header = export_columns() %}
{%- set n_columns = header | length %}
with lines as (

    {{ export_lines(export_file_plan()) }}

),

split as (

    select
        event_row_id,
        source_file,
        source_file_version,
        line,
        overflow,
        {{ csv_fields('line') }} as fields
    from lines
    -- A blank line holds no row (and a CRLF line end in an LF file leaves one behind).
    where line is not null

),

named as (

    select
        event_row_id,
        source_file,
        source_file_version,
        {%- for column in ['platform', 'utc_event_time', 'utc_event_date', 'user_id', 'event_type',
                           'ecom.price100', 'ecom.qty', 'ecom.nm'] %}
            {{ export_field('fields', header, column) }} as {{ column | replace('.', '_') }},
        {%- endfor %}
        -- An empty category field means no categories, as in an 8-column export.
        nullif({{ export_field('fields', header, 'main_category') }}, '') as main_category,
        nullif({{ export_field('fields', header, 'sub_category') }}, '') as sub_category,
        -- Exactly the header's number of fields: fewer or more means the line is not a row.
        coalesce(overflow is null and {{ list_length('fields') }} = {{ n_columns }}, false) as line_well_formed,
        {{ list_tail('fields', n_columns + 1) }} as extra_fields,
        -- The line itself only where its fields cannot show it (kept rows do not copy it).
        case when fields is null or overflow is not null then concat_ws(chr(31), line, overflow) end as raw_line
    from split

)

select
    event_row_id,
    source_file,
    source_file_version,

    platform as raw_platform,
    utc_event_time as raw_event_time,
    utc_event_date as raw_event_date,
    user_id as raw_user_id,
    event_type as raw_event_type,
    ecom_price100 as raw_price100,
    ecom_qty as raw_qty,
    ecom_nm as raw_item_ids,
    main_category as raw_main_category,
    sub_category as raw_sub_category,

    -- Fast paths first: the values as the export writes them skip trimming and regexes.
    case when platform in ({{ sql_values(var('platforms')) }}) then platform else trim(platform) end as platform,
    -- The instant as a UTC timestamp.
    {{ parse_utc_time('utc_event_time') }} as event_at,
    try_cast(utc_event_date as date) as event_date,
    {{ decimal_id('user_id') }} as user_id,
    case event_type
        when 'ec.view_item' then 'view_item' when 'ec.add_to_cart' then 'add_to_cart'
        when 'ec.purchase' then 'purchase' when 'user_engagement' then 'user_engagement'
        when 'pageview' then 'pageview'
        else regexp_replace(trim(event_type), '^ec\.', '')
    end as event_type,

    {{ is_id_list('ecom_nm') }}
    and {{ is_integer_list('ecom_price100') }}
    and {{ is_integer_list('ecom_qty') }}
    and (main_category is null or {{ is_id_list('main_category') }})
    and (sub_category is null or {{ is_id_list('sub_category') }})
        as lists_well_formed,
    -- Elements that are not numbers become NULL.
    {{ parse_list('ecom_nm', 'varchar') }} as item_ids,
    {{ parse_list('ecom_price100', 'bigint') }} as prices100,
    {{ parse_list('ecom_qty', 'bigint') }} as quantities,
    {{ parse_list('main_category', 'varchar') }} as category_ids,
    {{ parse_list('sub_category', 'varchar') }} as sub_category_ids,
    line_well_formed,
    extra_fields,
    raw_line

from named
