-- One typed row per (accepted commerce event, line item): the ecom.* lists unnested position by
-- position. Unknown prices stay NULL (price_known = false); unknown quantities count as 1.
with accepted as (

    select
        event_row_id,
        user_id,
        platform,
        event_type,
        event_at,
        event_date,
        item_ids,
        prices100,
        quantities,
        category_ids,
        sub_category_ids
    from {{ ref('int_events__validated') }}
    where reject_reason is null and is_commerce

),

positions as (

    -- unnest streams; a lateral join to range() is planned as a join that first de-duplicates
    -- the lists it is correlated on.
    select
        *,
        {{ list_positions('item_ids') }} as position
    from accepted

)

select
    event_row_id,
    position as line_position,
    user_id,
    platform,
    event_type,
    event_at,
    event_date,
    {{ list_element('item_ids', 'position') }} as item_id,
    {{ list_element('prices100', 'position') }} as price100,
    -- a double on both engines (Spark divides by a decimal literal into a decimal)
    cast({{ list_element('prices100', 'position') }} as double) / 100 as price_rub,
    {{ list_length('prices100') }} > 0 as price_known,
    coalesce({{ list_element('quantities', 'position') }}, 1) as quantity,
    {{ list_element('category_ids', 'position') }} as category_id,
    {{ list_element('sub_category_ids', 'position') }} as sub_category_id
from positions
