-- What is popular now: time-decayed weighted events per item, ranked overall, per platform and
-- per category (when the export has categories). Feeds candidates and cold-start lists.
with events as {{ not_materialized() }} (

    {{ events_before_cutoffs() }}

),

scored as (

    select
        cutoff_at,
        'global' as scope,
        'all' as scope_value,
        item_id,
        sum({{ event_weight('event_type') }} * {{ decay('event_at', 'cutoff_at') }}) as score
    from events
    group by all

    union all

    select
        cutoff_at,
        'platform' as scope,
        platform as scope_value,
        item_id,
        sum({{ event_weight('event_type') }} * {{ decay('event_at', 'cutoff_at') }}) as score
    from events
    group by all

    union all

    select
        cutoff_at,
        'category' as scope,
        category_id as scope_value,
        item_id,
        sum({{ event_weight('event_type') }} * {{ decay('event_at', 'cutoff_at') }}) as score
    from events
    where category_id is not null
    group by all

)

select
    cutoff_at,
    scope,
    scope_value,
    item_id,
    score,
    row_number() over (partition by cutoff_at, scope, scope_value order by score desc, item_id asc) as popularity_rank
from scored
qualify popularity_rank <= {{ int_var('popular_items_per_scope') }}
