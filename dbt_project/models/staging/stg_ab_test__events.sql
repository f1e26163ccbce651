-- One typed row per exported line. Parsing only: each line is split into its fields here (the
-- source is the lines as written, see _ab_test__sources.yml), the header (export_columns(): var
-- export_columns, else the file's first line) says which field is which, values that do not
-- parse become NULL, and int_events__validated judges them (kept or quarantined with a reason).
-- Lines the reader cannot take at all are kept by DuckDB's store_rejects; the post-hook saves
-- them (same connection) for stg_ab_test__unreadable_lines.
{{ config(post_hook="create or replace table " ~ this.schema ~ ".ab_test_reader_rejects as
    select line as line_number, error_type, csv_line, error_message from reject_errors") }}
{%- set header = export_columns() %}
{%- set n_columns = header | length %}
with lines as (

    select
        row_number() over () as event_row_id,
        line,
        overflow
    from {{ source('ab_test', 'events') }}

),

split as (

    select
        event_row_id,
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
        {%- for column in ['platform', 'utc_event_time', 'utc_event_date', 'user_id', 'event_type',
                           'ecom.price100', 'ecom.qty', 'ecom.nm'] %}
            {{ export_field('fields', header, column) }} as "{{ column }}",
        {%- endfor %}
        -- An empty category field means no categories, as in an 8-column export.
        nullif({{ export_field('fields', header, 'main_category') }}, '') as main_category,
        nullif({{ export_field('fields', header, 'sub_category') }}, '') as sub_category,
        -- Exactly the header's number of fields: fewer or more means the line is not a row.
        coalesce(overflow is null and len(fields) = {{ n_columns }}, false) as line_well_formed,
        case when len(fields) > {{ n_columns }} then fields[{{ n_columns + 1 }}:] else [] end as extra_fields,
        -- The line itself only where its fields cannot show it (kept rows do not copy it).
        case when fields is null or overflow is not null then concat_ws(chr(31), line, overflow) end as raw_line
    from split

)

select
    event_row_id,

    platform as raw_platform,
    utc_event_time as raw_event_time,
    utc_event_date as raw_event_date,
    user_id as raw_user_id,
    event_type as raw_event_type,
    "ecom.price100" as raw_price100,
    "ecom.qty" as raw_qty,
    "ecom.nm" as raw_item_ids,
    main_category as raw_main_category,
    sub_category as raw_sub_category,

    -- Fast paths first: the values as the export writes them skip trimming and regexes.
    case when platform in ({{ sql_values(var('platforms')) }}) then platform else trim(platform) end as platform,
    -- The instant as a UTC timestamp; epoch_us avoids a per-row time zone lookup.
    make_timestamp(epoch_us(try_strptime(utc_event_time, '%Y-%m-%d %H:%M:%S%z'))) as event_at,
    try_cast(utc_event_date as date) as event_date,
    {{ decimal_id('user_id') }} as user_id,
    case event_type
        when 'ec.view_item' then 'view_item' when 'ec.add_to_cart' then 'add_to_cart'
        when 'ec.purchase' then 'purchase' when 'user_engagement' then 'user_engagement'
        when 'pageview' then 'pageview'
        else regexp_replace(trim(event_type), '^ec\.', '')
    end as event_type,

    {{ is_id_list('"ecom.nm"') }}
    and {{ is_integer_list('"ecom.price100"') }}
    and {{ is_integer_list('"ecom.qty"') }}
    and (main_category is null or {{ is_id_list('main_category') }})
    and (sub_category is null or {{ is_id_list('sub_category') }})
        as lists_well_formed,
    -- DuckDB parses list text natively; elements that are not numbers become NULL.
    try_cast("ecom.nm" as varchar[]) as item_ids,
    try_cast("ecom.price100" as bigint[]) as prices100,
    try_cast("ecom.qty" as bigint[]) as quantities,
    try_cast(main_category as varchar[]) as category_ids,
    try_cast(sub_category as varchar[]) as sub_category_ids,
    line_well_formed,
    extra_fields,
    raw_line

from named
