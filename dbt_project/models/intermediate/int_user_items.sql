-- What each user did with each item before each cutoff.
with events as {{ not_materialized() }} (

    {{ events_before_cutoffs() }}

),

purchase_days as (

    -- Distinct purchase days from purchases alone (about 1 % of events): a DISTINCT aggregate
    -- inside the main group-by would be planned as a second group-by over every event.
    select
        cutoff_at,
        user_id,
        item_id,
        count(distinct event_date) as n_purchase_days,
        count(distinct event_date) filter (
            where event_at >= cutoff_at - {{ days(int_var('horizon_days')) }}
        ) as n_recent_purchase_days,
        sum(quantity) as n_units,
        min(event_at) as first_purchase_at
    from events
    where event_type = 'purchase'
    group by cutoff_at, user_id, item_id

),

per_user_item as (

    select
        cutoff_at,
        user_id,
        item_id,
        count(*) filter (where event_type = 'view_item') as n_views,
        count(*) filter (where event_type = 'add_to_cart') as n_carts,
        count(*) filter (where event_type = 'purchase') as n_purchases,
        max(event_at) as last_event_at,
        max(event_at) filter (where event_type = 'purchase') as last_purchase_at,
        sum({{ event_weight('event_type') }} * {{ decay('event_at', 'cutoff_at') }}) as interest
    from events
    group by cutoff_at, user_id, item_id

)

select
    per_user_item.cutoff_at,
    per_user_item.user_id,
    per_user_item.item_id,
    per_user_item.n_views,
    per_user_item.n_carts,
    per_user_item.n_purchases,
    coalesce(purchase_days.n_purchase_days, 0) as n_purchase_days,
    coalesce(purchase_days.n_recent_purchase_days, 0) as n_recent_purchase_days,
    coalesce(purchase_days.n_units, 0) as n_units,
    purchase_days.first_purchase_at,
    -- The user's buying cycle for the item: mean days between purchase days (NULL below two).
    {{ days_between('purchase_days.first_purchase_at', 'per_user_item.last_purchase_at') }}
    / nullif(purchase_days.n_purchase_days - 1, 0) as repurchase_gap_days,
    per_user_item.last_event_at,
    per_user_item.last_purchase_at,
    per_user_item.interest
from per_user_item
left join purchase_days using (cutoff_at, user_id, item_id)
