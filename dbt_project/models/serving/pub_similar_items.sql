-- "Bought together": for each item, the items the same users bought (or, weaker, carted or
-- viewed) with it before the serving cutoff. Pairs below the k-user threshold never reach here.
with pairs as (

    select
        pairs.item_id,
        pairs.other_item_id,
        pairs.support_users,
        pairs.confidence,
        pairs.lift,
        pairs.confidence * case pairs.signal when 'purchase' then 1.0 when 'cart' then 0.5 else 0.25 end
            as score
    from {{ ref('co_purchase') }} as pairs
    where pairs.cutoff_at = {{ serving_cutoff() }}

),

best_signal as (

    select
        item_id,
        other_item_id,
        max(score) as score,
        max_by(support_users, score) as support_users,
        max_by(confidence, score) as confidence,
        max_by(lift, score) as lift
    from pairs
    group by item_id, other_item_id

)

select
    item_id,
    other_item_id as similar_item_id,
    row_number() over (partition by item_id order by score desc, lift desc, other_item_id asc)::integer as rank,
    score,
    support_users::integer as support_users,
    confidence,
    lift,
    {{ build_version() }} as model_version
from best_signal
qualify rank <= {{ int_var('top_n') }}
