-- Item attributes and behaviour as of each cutoff.
with events as ({{ events_before_cutoffs() }}),

per_item as (

    select
        cutoff_at,
        item_id,
        mode(category_id)                               as category_id,
        arg_max(price_rub, event_at) filter (where price_rub > 0) as price_rub,
        count(*) filter (where event_type = 'view_item')    as n_views,
        count(*) filter (where event_type = 'add_to_cart')  as n_carts,
        count(*) filter (where event_type = 'purchase')     as n_purchases,
        count(distinct user_id)                         as n_users,
        count(distinct user_id) filter (where event_type = 'purchase') as n_buyers,
        sum({{ event_weight('event_type') }} * {{ decay('event_at', 'cutoff_at') }}) as popularity,
        sum({{ event_weight('event_type') }}) filter (where event_at >= cutoff_at - interval 3 day)
                                                        as recent_weight,
        sum({{ event_weight('event_type') }}) filter (
            where event_at < cutoff_at - interval 3 day and event_at >= cutoff_at - interval 6 day
        )                                               as previous_weight,
        date_diff('second', min(event_at), cutoff_at) / 86400.0 as age_days
    from events
    group by cutoff_at, item_id

),

rebuys as (

    select
        cutoff_at,
        item_id,
        count(*) filter (where n_purchase_days >= 2)    as n_rebuyers
    from {{ ref('int_user_items') }}
    where n_purchases > 0
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
    per_item.n_users,
    per_item.n_buyers,
    coalesce(rebuys.n_rebuyers, 0)                      as n_rebuyers,
    coalesce(rebuys.n_rebuyers, 0) / nullif(per_item.n_buyers, 0)::double as rebuy_rate,
    per_item.popularity,
    -- Smoothed ratio of the last three days to the three before: > 1 rising, < 1 fading.
    (coalesce(per_item.recent_weight, 0) + 1) / (coalesce(per_item.previous_weight, 0) + 1) as trend,
    (per_item.n_carts + 0.1) / (per_item.n_views + 1.0)  as cart_rate,
    (per_item.n_purchases + 0.05) / (per_item.n_views + per_item.n_carts + 1.0) as purchase_rate,
    per_item.age_days
from per_item
left join rebuys using (cutoff_at, item_id)
