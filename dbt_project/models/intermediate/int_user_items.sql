-- What each user did with each item before each cutoff.
with events as ({{ events_before_cutoffs() }})

select
    cutoff_at,
    user_id,
    item_id,
    count(*) filter (where event_type = 'view_item')    as n_views,
    count(*) filter (where event_type = 'add_to_cart')  as n_carts,
    count(*) filter (where event_type = 'purchase')     as n_purchases,
    count(distinct event_date) filter (where event_type = 'purchase') as n_purchase_days,
    max(event_at)                                       as last_event_at,
    max(event_at) filter (where event_type = 'purchase') as last_purchase_at,
    sum({{ event_weight('event_type') }} * {{ decay('event_at', 'cutoff_at') }}) as interest
from events
group by cutoff_at, user_id, item_id
