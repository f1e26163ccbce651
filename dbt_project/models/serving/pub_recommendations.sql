-- The personal "you may like" lists the marketplace reads: top N per user at the serving cutoff.
-- The reason is coarsened (docs/privacy.md): every source built from the user's own events
-- (their items, the items bought with them, their categories) is 'personal', so a reader of the
-- serving file cannot tell which recommended items the user bought or viewed, nor the item
-- behind a co-purchase. The detailed reason stays in the build database.
select
    user_id,
    item_id,
    rank::integer as rank,
    score,
    case
        when reason in ('trending', 'popular') or reason like 'baseline:%' then reason
        else 'personal'
    end as reason,
    {{ publication_stamp() }}
from {{ source('ml', 'ml_recommendations') }}
