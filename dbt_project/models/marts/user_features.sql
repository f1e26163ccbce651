-- Users as of each cutoff: activity, recency and the price tier they buy in. The tier comes
-- from purchases when there are any (what people pay), else from carts, else from views.
with events as {{ not_materialized() }} (

    {{ events_before_cutoffs() }}

),

activity as (

    select
        cutoffs.cutoff_at,
        activity.user_id,
        min(activity.platform) as platform,
        count(distinct activity.event_date) as n_active_days,
        min(activity.event_date) as first_active_date,
        sum(activity.n_events)::bigint as n_events,
        sum(activity.n_engagement_events + activity.n_pageview_events)::bigint as n_noncommerce_events
    from {{ ref('int_user_activity') }} as activity
    inner join {{ ref('int_cutoffs') }} as cutoffs on activity.event_date < cutoffs.cutoff_at::date
    group by cutoffs.cutoff_at, activity.user_id

),

commerce as (

    select
        cutoff_at,
        user_id,
        min(platform) as platform,
        count(*) filter (where event_type = 'view_item') as n_views,
        count(*) filter (where event_type = 'add_to_cart') as n_carts,
        count(*) filter (where event_type = 'purchase') as n_purchases,
        count(distinct item_id) as n_items,
        {{ days_between('max(event_at)', 'cutoff_at') }} as days_since_last_event,
        {{ days_between("max(event_at) filter (where event_type = 'purchase')", 'cutoff_at') }}
            as days_since_last_purchase
    from events
    group by cutoff_at, user_id

),

categories as (

    -- The categories a user has events in and the top one (most events; a tie goes to the larger
    -- id: mode() breaks ties arbitrarily, and a rebuild must give the same features).
    select
        cutoff_at,
        user_id,
        count(*) as n_categories,
        {{ value_of_max('category_id', 'n_events') }} as top_category_id
    from (
        select
            cutoff_at,
            user_id,
            category_id,
            count(*) as n_events
        from events
        where category_id is not null
        group by cutoff_at, user_id, category_id
    ) as per_category
    group by cutoff_at, user_id

),

purchase_days as (

    -- Baskets (distinct purchase days) and how much of the buying is buying again: 0 for a user
    -- who never bought an item twice, near 1 for one who buys the same things every time.
    select
        cutoff_at,
        user_id,
        count(distinct event_date) as n_purchase_days,
        count(distinct event_date) filter (
            where event_at >= cutoff_at - {{ days(int_var('horizon_days')) }}
        ) as n_recent_purchase_days
    from events
    where event_type = 'purchase'
    group by cutoff_at, user_id

),

repeat_buying as (

    select
        cutoff_at,
        user_id,
        1 - count(*) / sum(n_purchase_days) as repeat_purchase_share
    from {{ ref('int_user_items') }}
    where n_purchase_days > 0
    group by cutoff_at, user_id

),

best_ranks as (

    -- The user's best (lowest) kind of event with a known price.
    select
        cutoff_at,
        user_id,
        min({{ commitment_rank('event_type') }}) as best_rank
    from events
    where price_rub > 0
    group by cutoff_at, user_id

),

tier_events as (

    -- The most committed kind of event the user has with a known price decides the tier:
    -- the events of the user's best (lowest) kind rank, found with a group-by and a join
    -- rather than a window that sorts every priced event with all its columns.
    select
        events.cutoff_at,
        events.user_id,
        events.event_type,
        events.price_rub
    from events
    inner join best_ranks as best using (cutoff_at, user_id)
    where events.price_rub > 0 and {{ commitment_rank('events.event_type') }} = best.best_rank

),

tier as (

    select
        cutoff_at,
        user_id,
        any_value(event_type) as price_tier_source,
        median(price_rub) as price_median_rub,
        {{ quantile('price_rub', 0.25) }} as price_p25_rub,
        {{ quantile('price_rub', 0.75) }} as price_p75_rub,
        count(*) as price_observations
    from tier_events
    group by cutoff_at, user_id

)

select
    cutoff_at,
    user_id,
    coalesce(activity.platform, commerce.platform) as platform,
    coalesce(activity.n_active_days, 1) as n_active_days,
    -- Days since the first event, at least the one day the user is known.
    greatest({{ date_distance('activity.first_active_date', 'cutoff_at::date') }}, 1)::double as tenure_days,
    coalesce(activity.n_events, 0) as n_events,
    coalesce(activity.n_noncommerce_events, 0) as n_noncommerce_events,
    coalesce(commerce.n_views, 0) as n_views,
    coalesce(commerce.n_carts, 0) as n_carts,
    coalesce(commerce.n_purchases, 0) as n_purchases,
    coalesce(purchase_days.n_purchase_days, 0) as n_purchase_days,
    coalesce(purchase_days.n_recent_purchase_days, 0) as n_recent_purchase_days,
    coalesce(repeat_buying.repeat_purchase_share, 0) as repeat_purchase_share,
    coalesce(commerce.n_items, 0) as n_items,
    coalesce(categories.n_categories, 0) as n_categories,
    categories.top_category_id,
    commerce.days_since_last_event,
    commerce.days_since_last_purchase,
    tier.price_tier_source,
    tier.price_median_rub,
    tier.price_p25_rub,
    tier.price_p75_rub,
    -- Spread of the tier on a log scale: 0 for a user who always pays the same.
    ln(tier.price_p75_rub / tier.price_p25_rub) as price_spread,
    coalesce(tier.price_observations, 0) as price_observations
-- Full join: with a cutoff inside a day, that day's commerce counts but its dated-only activity not.
from activity
full join commerce using (cutoff_at, user_id)
left join categories using (cutoff_at, user_id)
left join purchase_days using (cutoff_at, user_id)
left join repeat_buying using (cutoff_at, user_id)
left join tier using (cutoff_at, user_id)
