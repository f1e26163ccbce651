-- Every staged row with the verdict on it: reject_reason is NULL for usable rows, else the first
-- failed check. Rows are never dropped here, which is what makes conservation testable. Only the
-- typed fields go on: the text as written stays in staging, where rejected_rows reads it for the
-- few rows that need it (copying it for every row was a third of this model's cost).
{% set commerce = "event_type in (" ~ sql_values(var('event_types')) ~ ")" %}

{% set raw_columns = "raw_platform, raw_event_time, raw_event_date, raw_user_id, raw_event_type,
    raw_price100, raw_qty, raw_item_ids, raw_main_category, raw_sub_category" %}

with repeated_hashes as (

    -- Exact copies hash alike, so only rows sharing a hash with another row can be copies.
    -- Grouping one 64-bit hash is far cheaper than partitioning every row by ten text columns.
    select hash({{ raw_columns }}) as raw_hash
    from {{ ref('stg_ab_test__events') }}
    group by raw_hash
    having count(*) > 1

),

copies as (

    -- The few candidate rows, compared on the real columns (a hash collision is not a copy).
    select
        event_row_id,
        row_number() over (partition by {{ raw_columns }} order by event_row_id) as copy_number
    from {{ ref('stg_ab_test__events') }}
    where hash({{ raw_columns }}) in (select repeated_hashes.raw_hash from repeated_hashes)

),

span as (

    -- The export's dense span of dates, one row.
    select
        min(event_date) as first_date,
        max(event_date) as last_date
    from {{ ref('int_export_days') }}
    where in_span

),

events as (

    select
        staged.*,
        {{ commerce }} as is_commerce,
        coalesce(copies.copy_number, 1) as copy_number,
        {{ list_length('staged.item_ids') }} as n_items,
        {{ list_length('staged.prices100') }} as n_prices,
        {{ list_length('staged.quantities') }} as n_quantities,
        {{ list_length('staged.category_ids') }} as n_categories,
        {{ list_length('staged.sub_category_ids') }} as n_sub_categories
    from {{ ref('stg_ab_test__events') }} as staged
    left join copies using (event_row_id)

)

select
    event_row_id,
    platform,
    event_at,
    event_date,
    user_id,
    event_type,
    is_commerce,
    item_ids,
    prices100,
    quantities,
    category_ids,
    sub_category_ids,
    case
        -- A line that does not split into the header's fields (an unbalanced quote, too few or too
        -- many fields); or a list field left empty (real rows always write `[]`).
        when not line_well_formed or raw_item_ids = '' or raw_price100 = '' or raw_qty = ''
            then 'malformed_row'
        when raw_user_id is null or trim(raw_user_id) = '' then 'missing_user_id'
        when user_id is null then 'bad_user_id'
        when
            event_type is null
            or event_type not in ({{ sql_values(var('event_types') + var('activity_event_types')) }})
            then 'unknown_event_type'
        when platform is null or platform not in ({{ sql_values(var('platforms')) }}) then 'unknown_platform'
        when event_date is null then 'bad_event_date'
        -- Engagement and pageview rows may leave the time empty, but a time that is written must parse.
        when event_at is null and (is_commerce or raw_event_time <> '') then 'bad_timestamp'
        when is_commerce and (
            not lists_well_formed
            or {{ list_count('item_ids') }} <> n_items
            or {{ list_count('category_ids') }} <> n_categories
            or {{ list_count('sub_category_ids') }} <> n_sub_categories
        ) then 'malformed_list'
        when is_commerce and n_items = 0 then 'no_items'
        -- A well-formed number that BIGINT cannot hold parses to NULL: quarantined, never kept as NULL.
        when
            is_commerce
            and ({{ list_count('prices100') }} <> n_prices or {{ list_count('quantities') }} <> n_quantities)
            then 'unrepresentable_value'
        -- An empty price or quantity list beside items means "unknown", not misaligned.
        when is_commerce and (
            (n_prices > 0 and n_prices <> n_items)
            or (n_quantities > 0 and n_quantities <> n_items)
            or (n_categories > 0 and n_categories <> n_items)
            or (n_sub_categories > 0 and n_sub_categories <> n_items)
        ) then 'list_length_mismatch'
        when
            is_commerce
            and (coalesce({{ list_min('prices100') }}, 0) < 0 or coalesce({{ list_min('quantities') }}, 0) < 0)
            then 'negative_value'
        when is_commerce and (
            coalesce({{ list_max('prices100') }}, 0) > {{ int_var('max_price100') }}
            or coalesce({{ list_max('quantities') }}, 0) > {{ int_var('max_qty') }}
            or abs({{ date_distance('event_at::date', 'event_date') }}) > 1
        ) then 'absurd_value'
        -- Judged against the export's own body, not the wall clock (see int_export_days).
        when event_date not between (select span.first_date from span) and (select span.last_date from span)
            then 'outlier_date'
        -- Only commerce rows carry a time to the second: identical engagement or pageview rows
        -- (dated, untimed) are genuine repeated activity, not copies.
        when is_commerce and copy_number > 1 then 'duplicate_row'
    end as reject_reason

from events
