-- Candidate items per user and cutoff, one row each, with the score of every source that proposed it.
-- Sources (a candidate may come from several; primary_source is the first in this order):
--   history      the user's own items, strongest recent interest first (items still wanted)
--   repurchase   the user's own purchases, most often bought first (re-buys of consumables)
--   co_purchase  items bought/carted/viewed together with the user's top items (anchor_item_id)
--   category     popular items of the user's top three categories within their price tier
--   trending     rising items among what is popular on the user's platform now
--   popular      popular on the user's platform now (the fallback source)
-- Serving cutoff: every user with history. Labelled cutoffs: only users who purchase in the label
-- window (the only users a ranking can be learned or judged on); label = purchased in the window.
-- Both are tables already and each is read by several sources: not materialized, so DuckDB does
-- not copy (and at 50 M rows spill) them once more.
with users as {{ not_materialized() }} (

    select * from {{ ref('candidate_users') }}

),

user_items as {{ not_materialized() }} (

    select * from {{ ref('candidate_user_items') }}

),

from_history as (

    select
        cutoff_at,
        user_id,
        item_id,
        'history' as source,
        interest as source_score,
        null::{{ text_type() }} as anchor_item_id
    from user_items
    where interest_rank <= {{ int_var('candidates_history') }}

),

from_repurchase as (

    select
        cutoff_at,
        user_id,
        item_id,
        'repurchase' as source,
        n_purchase_days + cast(n_purchases as double) / 100 as source_score,
        null::{{ text_type() }} as anchor_item_id
    from user_items
    where purchase_rank <= {{ int_var('candidates_repurchase') }}

),

neighbours as (

    -- Each anchor brings at most its strongest neighbours: bounds the join for heavy users.
    select
        *,
        case signal when 'purchase' then 1.0 when 'cart' then 0.5 else 0.25 end as signal_weight
    from {{ ref('co_purchase') }}
    qualify row_number() over (
        partition by cutoff_at, item_id order by confidence * signal_weight desc, other_item_id asc
    ) <= {{ int_var('candidates_neighbours_per_item') }}

),

from_co_purchase as (

    select
        anchors.cutoff_at,
        anchors.user_id,
        pairs.other_item_id as item_id,
        'co_purchase' as source,
        sum(anchors.interest * pairs.confidence * pairs.signal_weight) as source_score,
        max_by(anchors.item_id, anchors.interest * pairs.confidence * pairs.signal_weight) as anchor_item_id
    from user_items as anchors
    inner join neighbours as pairs
        on anchors.cutoff_at = pairs.cutoff_at and anchors.item_id = pairs.item_id
    where anchors.interest_rank <= {{ int_var('candidates_anchor_items') }}
    group by anchors.cutoff_at, anchors.user_id, pairs.other_item_id
    qualify row_number() over (
        partition by anchors.cutoff_at, anchors.user_id order by source_score desc, pairs.other_item_id asc
    ) <= {{ int_var('candidates_co_purchase') }}

),

category_interest as (

    select
        user_items.cutoff_at,
        user_items.user_id,
        items.category_id,
        sum(user_items.interest) as interest
    from user_items
    inner join {{ ref('item_features') }} as items using (cutoff_at, item_id)
    where items.category_id is not null
    group by user_items.cutoff_at, user_items.user_id, items.category_id

),

user_categories as (

    -- The user's three favourite categories, with their share of the user's interest.
    select
        cutoff_at,
        user_id,
        category_id,
        interest / sum(interest) over (partition by cutoff_at, user_id) as category_share
    from category_interest
    qualify row_number() over (partition by cutoff_at, user_id order by interest desc, category_id asc) <= 3

),

category_items as (

    -- Each category's popular items with their price, keyed by an integer that sorts like item_id.
    select
        popular.cutoff_at,
        popular.scope_value as category_id,
        popular.item_id,
        dense_rank() over (partition by popular.cutoff_at order by popular.item_id) as item_key,
        popular.score,
        items.price_rub
    from {{ ref('item_popularity') }} as popular
    inner join {{ ref('item_features') }} as items using (cutoff_at, item_id)
    where popular.scope = 'category'

),

category_users as (

    -- The users' favourite categories with their price tier, keyed by an integer per user.
    select
        users.cutoff_at,
        users.user_id,
        dense_rank() over (partition by users.cutoff_at order by users.user_id) as user_key,
        user_categories.category_id,
        user_categories.category_share,
        users.price_median_rub is null as any_price,
        users.price_p25_rub / 2 as price_low,
        users.price_p75_rub * 2 as price_high
    from users
    inner join user_categories using (cutoff_at, user_id)

),

category_top as (

    -- Users x three categories x the category's popular items (149 M rows at 50 M events), ranked
    -- per user on integer keys: on the 39-character ids that sort took 2.3 times as long.
    select
        category_users.cutoff_at,
        category_users.user_key,
        category_items.item_key,
        category_items.score * category_users.category_share as source_score
    from category_users
    inner join category_items using (cutoff_at, category_id)
    where
        category_users.any_price or category_items.price_rub is null
        or category_items.price_rub between category_users.price_low and category_users.price_high
    qualify row_number() over (
        partition by category_users.cutoff_at, category_users.user_key
        order by source_score desc, category_items.item_key asc
    ) <= {{ int_var('candidates_category') }}

),

user_keys as (

    select distinct
        cutoff_at,
        user_key,
        user_id
    from category_users

),

item_keys as (

    select distinct
        cutoff_at,
        item_key,
        item_id
    from category_items

),

from_category as (

    select
        category_top.cutoff_at,
        user_keys.user_id,
        item_keys.item_id,
        'category' as source,
        category_top.source_score,
        null::{{ text_type() }} as anchor_item_id
    from category_top
    inner join user_keys using (cutoff_at, user_key)
    inner join item_keys using (cutoff_at, item_key)

),

trending_items as (

    select
        popular.cutoff_at,
        popular.scope_value as platform,
        popular.item_id,
        popular.score * items.trend as trend_score
    from {{ ref('item_popularity') }} as popular
    inner join {{ ref('item_features') }} as items using (cutoff_at, item_id)
    where popular.scope = 'platform' and items.trend > 1
    qualify row_number() over (
        partition by popular.cutoff_at, popular.scope_value order by trend_score desc, popular.item_id asc
    ) <= {{ int_var('candidates_trending') }}

),

from_trending as (

    select
        users.cutoff_at,
        users.user_id,
        trending_items.item_id,
        'trending' as source,
        trending_items.trend_score as source_score,
        null::{{ text_type() }} as anchor_item_id
    from users
    inner join trending_items
        on users.cutoff_at = trending_items.cutoff_at and users.platform = trending_items.platform

),

from_popular as (

    select
        users.cutoff_at,
        users.user_id,
        popular.item_id,
        'popular' as source,
        popular.score as source_score,
        null::{{ text_type() }} as anchor_item_id
    from users
    inner join {{ ref('item_popularity') }} as popular
        on
            users.cutoff_at = popular.cutoff_at and popular.scope = 'platform'
            and users.platform = popular.scope_value
            and popular.popularity_rank <= {{ int_var('candidates_popular') }}

),

sourced as (

    select * from from_history
    union all
    select * from from_repurchase
    union all
    select * from from_co_purchase
    union all
    select * from from_category
    union all
    select * from from_trending
    union all
    select * from from_popular

),

merged as (

    select
        cutoff_at,
        user_id,
        item_id,
        min_by(source, case source
            when 'history' then 1 when 'repurchase' then 2 when 'co_purchase' then 3
            when 'category' then 4 when 'trending' then 5 else 6
        end) as primary_source,
        count(*) as n_sources,
        max(source_score) filter (where source = 'history') as history_score,
        max(source_score) filter (where source = 'repurchase') as repurchase_score,
        max(source_score) filter (where source = 'co_purchase') as co_purchase_score,
        max(source_score) filter (where source = 'category') as category_score,
        max(source_score) filter (where source = 'trending') as trending_score,
        max(source_score) filter (where source = 'popular') as popular_score,
        max(anchor_item_id) as anchor_item_id
    from sourced
    group by cutoff_at, user_id, item_id

)

select * from merged
