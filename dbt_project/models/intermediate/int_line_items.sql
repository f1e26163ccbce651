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

positions as {{ not_materialized() }} (

    -- unnest streams; a lateral join to range() is planned as a join that first de-duplicates
    -- the lists it is correlated on.
    select
        *,
        {{ list_positions('item_ids') }} as position
    from accepted

),

user_keys as (

    select
        user_id,
        row_number() over (order by user_id) as user_key
    from (select distinct user_id from accepted) as users

),

item_keys as (

    select
        item_id,
        row_number() over (order by item_id) as item_key
    from (select distinct {{ list_element('item_ids', 'position') }} as item_id from positions) as items

)

select
    positions.event_row_id,
    positions.position as line_position,
    positions.user_id,
    user_keys.user_key,
    positions.platform,
    positions.event_type,
    positions.event_at,
    positions.event_date,
    item_keys.item_id,
    item_keys.item_key,
    {{ list_element('positions.prices100', 'positions.position') }} as price100,
    -- a double on both engines (Spark divides by a decimal literal into a decimal)
    cast({{ list_element('positions.prices100', 'positions.position') }} as double) / 100 as price_rub,
    {{ list_length('positions.prices100') }} > 0 as price_known,
    coalesce({{ list_element('positions.quantities', 'positions.position') }}, 1) as quantity,
    {{ list_element('positions.category_ids', 'positions.position') }} as category_id,
    {{ list_element('positions.sub_category_ids', 'positions.position') }} as sub_category_id
from positions
inner join user_keys on positions.user_id = user_keys.user_id
inner join item_keys on {{ list_element('positions.item_ids', 'positions.position') }} = item_keys.item_id
