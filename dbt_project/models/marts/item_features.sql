-- Item attributes and behaviour as of each cutoff.
with events as {{ not_materialized() }} (

    {{ events_before_cutoffs() }}

),

per_item_category as (

    -- One pass over the events, grouped by (cutoff, item, category): the counts that choose
    -- the item's category, and its behaviour in parts that per_item adds up. Separate
    -- aggregates for the two, joined, ran out of memory at 49.7 M rows under a 10 GB cap.
    select
        cutoff_at,
        item_id,
        category_id,
        count(*) as n_events,
        max_by(price_rub, event_at) filter (where price_rub > 0) as price_rub,
        max(event_at) filter (where price_rub > 0) as priced_at,
        count(*) filter (where event_type = 'view_item') as n_views,
        count(*) filter (where event_type = 'add_to_cart') as n_carts,
        count(*) filter (where event_type = 'purchase') as n_purchases,
        sum({{ event_weight('event_type') }} * {{ decay('event_at', 'cutoff_at') }}) as popularity,
        sum({{ event_weight('event_type') }}) filter (where event_at >= cutoff_at - interval 3 day)
            as recent_weight,
        sum({{ event_weight('event_type') }}) filter (
            where event_at < cutoff_at - interval 3 day and event_at >= cutoff_at - interval 6 day
        ) as previous_weight,
        min(event_at) as first_event_at
    from events
    group by cutoff_at, item_id, category_id

),

per_item as (

    select
        cutoff_at,
        item_id,
        -- The category most of its events carry (a tie goes to the larger id: mode() breaks
        -- ties arbitrarily, and a rebuild must give the same features); events without one
        -- weigh -1, so they decide only when no event has a category (then NULL).
        {{ value_of_max('category_id', 'case when category_id is null then -1 else n_events end') }}
            as category_id,
        max_by(price_rub, priced_at) as price_rub,
        sum(n_views)::bigint as n_views,
        sum(n_carts)::bigint as n_carts,
        sum(n_purchases)::bigint as n_purchases,
        sum(popularity) as popularity,
        sum(recent_weight) as recent_weight,
        sum(previous_weight) as previous_weight,
        {{ days_between('min(first_event_at)', 'cutoff_at') }} as age_days
    from per_item_category
    group by cutoff_at, item_id

),

item_users as (

    -- Distinct users, buyers and re-buyers per item, counted on int_user_items (one row per
    -- user and item already): cheaper than DISTINCT aggregates over every event.
    select
        cutoff_at,
        item_id,
        count(*) as n_users,
        count(*) filter (where n_purchases > 0) as n_buyers,
        count(*) filter (where n_purchases > 0 and n_purchase_days >= 2) as n_rebuyers,
        count(*) filter (where last_purchase_at >= cutoff_at - {{ days(int_var('horizon_days')) }})
            as n_recent_buyers,
        count(*) filter (where last_purchase_at >= cutoff_at - interval 7 day) as n_week_buyers,
        avg(n_purchase_days) filter (where n_purchases > 0) as purchase_days_per_buyer,
        -- Typical days between two purchases of the item by the same user: its buying cycle.
        median(repurchase_gap_days) as repurchase_gap_days
    from {{ ref('int_user_items') }}
    group by cutoff_at, item_id

)

select
    per_item.cutoff_at,
    per_item.item_id,
    per_item.category_id,
    per_item.price_rub,
    per_item.n_views,
    per_item.n_carts,
    per_item.n_purchases,
    coalesce(item_users.n_users, 0) as n_users,
    coalesce(item_users.n_buyers, 0) as n_buyers,
    coalesce(item_users.n_rebuyers, 0) as n_rebuyers,
    coalesce(item_users.n_rebuyers, 0) / nullif(item_users.n_buyers, 0)::double as rebuy_rate,
    coalesce(item_users.n_recent_buyers, 0) as n_recent_buyers,
    coalesce(item_users.n_week_buyers, 0) as n_week_buyers,
    item_users.purchase_days_per_buyer,
    item_users.repurchase_gap_days,
    per_item.popularity,
    -- Smoothed ratio of the last three days to the three before: > 1 rising, < 1 fading.
    (coalesce(per_item.recent_weight, 0) + 1) / (coalesce(per_item.previous_weight, 0) + 1) as trend,
    (per_item.n_carts + 0.1) / (per_item.n_views + 1.0) as cart_rate,
    (per_item.n_purchases + 0.05) / (per_item.n_views + per_item.n_carts + 1.0) as purchase_rate,
    per_item.age_days
from per_item
left join item_users using (cutoff_at, item_id)
