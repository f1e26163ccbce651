-- The personal "you may like" lists the marketplace reads: top N per user at the serving cutoff.
select
    user_id,
    item_id,
    rank::integer                              as rank,
    score,
    reason,
    '{{ var("model_version") }}'               as model_version,
    timestamp '{{ var("generated_at") }}'      as generated_at
from {{ source('ml', 'ml_recommendations') }}
