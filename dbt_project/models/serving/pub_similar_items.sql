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
            as score,
        case pairs.signal when 'purchase' then 1 when 'cart' then 2 else 3 end as signal_order
    from {{ ref('co_purchase') }} as pairs
    where pairs.cutoff_at = {{ serving_cutoff() }}

),

-- One row per pair: the signal with the best score, and on a tie of score (0.3 x 1.0 = 0.6 x 0.5)
-- the stronger kind, so that both engines and every rebuild publish the same support and lift.
best_signal as (

    select
        item_id,
        other_item_id,
        score,
        support_users,
        confidence,
        lift
    from pairs
    qualify row_number() over (partition by item_id, other_item_id order by score desc, signal_order asc) = 1

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
