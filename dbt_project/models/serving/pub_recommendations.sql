-- The personal "you may like" lists the marketplace reads: top N per user at the serving cutoff.
select
    user_id,
    item_id,
    rank::integer                              as rank,
    score,
    reason,
    {{ publication_stamp() }}
from {{ source('ml', 'ml_recommendations') }}
