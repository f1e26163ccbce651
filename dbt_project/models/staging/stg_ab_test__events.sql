-- One typed row per exported row. Parsing only: values that do not parse become NULL here and
-- are judged (kept or quarantined with a reason) in int_events__validated.
-- Lines the CSV reader cannot split into the header's columns are kept by DuckDB's
-- store_rejects; the post-hook saves them (same connection) for stg_ab_test__unreadable_lines.
{{ config(post_hook="create or replace table " ~ this.schema ~ ".ab_test_reader_rejects as
    select line as line_number, error_type, csv_line, error_message from reject_errors") }}
with source as (

    -- The 8-column export has no category lists; this makes both layouts read the same. Fields
    -- beyond the layout (a line with too many commas) land in extra columns, kept as extra_fields.
    select null::varchar as main_category, null::varchar as sub_category,
           null::varchar as extra_field where false
    union all by name
    select * from {{ source('ab_test', 'events') }}

),

numbered as (

    select
        row_number() over () as event_row_id,
        *,
        list_value(*columns(lambda c: c not in (
            'platform', 'utc_event_time', 'utc_event_date', 'user_id', 'event_type',
            'ecom.price100', 'ecom.qty', 'ecom.nm', 'main_category', 'sub_category'))) as extra_values
    from source

)

select
    event_row_id,

    platform                                   as raw_platform,
    utc_event_time                             as raw_event_time,
    utc_event_date                             as raw_event_date,
    user_id                                    as raw_user_id,
    event_type                                 as raw_event_type,
    "ecom.price100"                            as raw_price100,
    "ecom.qty"                                 as raw_qty,
    "ecom.nm"                                  as raw_item_ids,
    main_category                              as raw_main_category,
    sub_category                               as raw_sub_category,

    -- Fast paths first: the values as the export writes them skip trimming and regexes.
    case when platform in ('Site', 'Android', 'iOS') then platform else trim(platform) end as platform,
    -- The instant as a UTC timestamp; epoch_us avoids a per-row time zone lookup.
    make_timestamp(epoch_us(try_strptime(utc_event_time, '%Y-%m-%d %H:%M:%S%z'))) as event_at,
    try_cast(utc_event_date as date)           as event_date,
    {{ decimal_id('user_id') }}                as user_id,
    case event_type
        when 'ec.view_item' then 'view_item' when 'ec.add_to_cart' then 'add_to_cart'
        when 'ec.purchase' then 'purchase' when 'user_engagement' then 'user_engagement'
        when 'pageview' then 'pageview'
        else regexp_replace(trim(event_type), '^ec\.', '')
    end                                        as event_type,

    {{ is_id_list('"ecom.nm"') }}
        and {{ is_integer_list('"ecom.price100"') }}
        and {{ is_integer_list('"ecom.qty"') }}
        and (main_category is null or {{ is_id_list('main_category') }})
        and (sub_category is null or {{ is_id_list('sub_category') }})
                                               as lists_well_formed,
    -- DuckDB parses list text natively; elements that are not numbers become NULL.
    try_cast("ecom.nm" as varchar[])           as item_ids,
    try_cast("ecom.price100" as bigint[])      as prices100,
    try_cast("ecom.qty" as bigint[])           as quantities,
    try_cast(main_category as varchar[])       as category_ids,
    try_cast(sub_category as varchar[])        as sub_category_ids,
    list_filter(extra_values, lambda v: v is not null) as extra_fields

from numbered
