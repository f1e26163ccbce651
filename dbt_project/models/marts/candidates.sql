-- Candidates with everything the ranker reads: the sources' scores (candidate_sources), the
-- user's and the item's features as of the cutoff, the user's own history with the item, and,
-- at labelled cutoffs, the label: purchased in the window.
select
    merged.cutoff_at,
    merged.user_id,
    merged.item_id,
    case when cutoffs.label_end_at is null then null
         else window_purchases.item_id is not null end              as purchased,
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
    users.n_views                                                    as user_views,
    users.n_carts                                                    as user_carts,
    users.n_purchases                                                as user_purchases,
    users.n_items                                                    as user_items,
    users.n_active_days                                              as user_active_days,
    users.days_since_last_event                                      as user_days_since_last_event,
    users.price_median_rub                                           as user_price_median_rub,
    users.price_spread                                               as user_price_spread,

    items.category_id                                       as item_category,
    items.price_rub                                                  as item_price_rub,
    items.popularity                                                 as item_popularity,
    items.trend                                                      as item_trend,
    items.rebuy_rate                                                 as item_rebuy_rate,
    items.cart_rate                                                  as item_cart_rate,
    items.purchase_rate                                              as item_purchase_rate,
    items.n_buyers                                                   as item_buyers,
    items.age_days                                                   as item_age_days,

    coalesce(own.n_views, 0)                                         as user_item_views,
    coalesce(own.n_carts, 0)                                         as user_item_carts,
    coalesce(own.n_purchases, 0)                                     as user_item_purchases,
    coalesce(own.interest, 0)                                        as user_item_interest,
    coalesce(own.n_purchases, 0) / greatest(users.n_purchases, 1)     as user_item_purchase_share,
    own.purchase_rank                                                as user_item_purchase_rank,
    date_diff('second', own.last_event_at, merged.cutoff_at) / 86400.0 as user_item_days_since,

    -- How far the item's price is from what the user pays: log ratio to the median, and how far
    -- above the user's usual range (0 inside it). The ranker may only lower scores as the latter grows.
    ln(items.price_rub / users.price_median_rub)                     as price_log_ratio,
    greatest(0, ln(items.price_rub / users.price_p75_rub))           as price_above_tier,
    items.category_id is not null and items.category_id = users.top_category_id as in_top_category
from {{ ref('candidate_sources') }} as merged
join {{ ref('int_cutoffs') }} as cutoffs using (cutoff_at)
join {{ ref('candidate_users') }} as users using (cutoff_at, user_id)
left join {{ ref('item_features') }} as items using (cutoff_at, item_id)
left join {{ ref('candidate_user_items') }} as own using (cutoff_at, user_id, item_id)
left join {{ ref('int_window_purchases') }} as window_purchases using (cutoff_at, user_id, item_id)
