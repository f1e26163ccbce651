-- Candidates with everything the ranker reads: the sources' scores (candidate_sources), the
-- user's and the item's features as of the cutoff, the user's own history with the item, and,
-- at labelled cutoffs, the label: purchased in the window.
with category_purchases as (

    -- How much of the user's buying (item purchase days) falls in each category; items without
    -- a category count in the total (their own NULL group matches no candidate).
    select
        own.cutoff_at,
        own.user_id,
        items.category_id,
        sum(own.n_purchase_days)
        / sum(sum(own.n_purchase_days)) over (partition by own.cutoff_at, own.user_id) as category_share
    from {{ ref('candidate_user_items') }} as own
    inner join {{ ref('item_features') }} as items using (cutoff_at, item_id)
    where own.n_purchase_days > 0
    group by own.cutoff_at, own.user_id, items.category_id

)

select
    merged.cutoff_at,
    merged.user_id,
    merged.item_id,
    case
        when cutoffs.label_end_at is null then null
        else window_purchases.item_id is not null
    end as purchased,
    merged.primary_source,
    merged.n_sources,
    merged.anchor_item_id,
    merged.history_score,
    merged.repurchase_score,
    merged.co_purchase_score,
    merged.category_score,
    merged.trending_score,
    merged.popular_score,

    users.platform,
    users.n_views as user_views,
    users.n_carts as user_carts,
    users.n_purchases as user_purchases,
    users.n_purchase_days as user_purchase_days,
    users.n_recent_purchase_days as user_recent_purchase_days,
    users.repeat_purchase_share as user_repeat_purchase_share,
    users.tenure_days as user_tenure_days,
    users.n_items as user_items,
    users.n_active_days as user_active_days,
    users.days_since_last_event as user_days_since_last_event,
    users.price_median_rub as user_price_median_rub,
    users.price_spread as user_price_spread,

    items.category_id as item_category,
    items.price_rub as item_price_rub,
    items.popularity as item_popularity,
    items.trend as item_trend,
    items.rebuy_rate as item_rebuy_rate,
    items.cart_rate as item_cart_rate,
    items.purchase_rate as item_purchase_rate,
    items.n_buyers as item_buyers,
    items.n_recent_buyers as item_recent_buyers,
    items.n_week_buyers as item_week_buyers,
    items.purchase_days_per_buyer as item_purchase_days_per_buyer,
    items.repurchase_gap_days as item_repurchase_gap_days,
    items.age_days as item_age_days,

    coalesce(own.n_views, 0) as user_item_views,
    coalesce(own.n_carts, 0) as user_item_carts,
    coalesce(own.n_purchases, 0) as user_item_purchases,
    coalesce(own.interest, 0) as user_item_interest,
    coalesce(own.n_purchases, 0) / greatest(users.n_purchases, 1) as user_item_purchase_share,
    own.purchase_rank as user_item_purchase_rank,
    {{ days_between('own.last_event_at', 'merged.cutoff_at') }} as user_item_days_since,
    coalesce(own.n_purchase_days, 0) as user_item_purchase_days,
    coalesce(own.n_units, 0) as user_item_units,
    -- Share of the user's baskets (all time, and in the last horizon) that held the item.
    coalesce(own.n_purchase_days, 0) / greatest(users.n_purchase_days, 1) as user_item_basket_share,
    coalesce(own.n_recent_purchase_days, 0) / greatest(users.n_recent_purchase_days, 1)
        as user_item_recent_basket_share,
    coalesce(own.n_purchase_days, 0) / users.tenure_days as user_item_purchase_rate,
    {{ days_between('own.last_purchase_at', 'merged.cutoff_at') }} as user_item_days_since_purchase,
    -- The user's own buying cycle for the item, and where in it the cutoff falls (1 = due now).
    own.repurchase_gap_days as user_item_repurchase_gap_days,
    {{ days_between('own.last_purchase_at', 'merged.cutoff_at') }}
    / nullif(own.repurchase_gap_days, 0) as user_item_cycle_position,
    coalesce(category_purchases.category_share, 0) as user_category_share,

    -- How far the item's price is from what the user pays: log ratio to the median, and how far
    -- above the user's usual range (0 inside it). The ranker may only lower scores as the latter grows.
    ln(items.price_rub / users.price_median_rub) as price_log_ratio,
    greatest(0, ln(items.price_rub / users.price_p75_rub)) as price_above_tier,
    items.category_id is not null and items.category_id = users.top_category_id as in_top_category
from {{ ref('candidate_sources') }} as merged
inner join {{ ref('int_cutoffs') }} as cutoffs using (cutoff_at)
inner join {{ ref('candidate_users') }} as users using (cutoff_at, user_id)
left join {{ ref('item_features') }} as items using (cutoff_at, item_id)
left join {{ ref('candidate_user_items') }} as own using (cutoff_at, user_id, item_id)
left join {{ ref('int_window_purchases') }} as window_purchases using (cutoff_at, user_id, item_id)
left join category_purchases
    on
        merged.cutoff_at = category_purchases.cutoff_at and merged.user_id = category_purchases.user_id
        and items.category_id = category_purchases.category_id
