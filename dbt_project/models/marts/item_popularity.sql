-- What is popular now: time-decayed weighted events per item, ranked overall, per platform and
-- per category (when the export has categories). Feeds candidates and cold-start lists.
-- Scored and ranked on int_line_items' integer item keys (a tie goes to the smaller key, i.e. the
-- smaller id); the ids are joined back to the items kept.
with events as {{ not_materialized() }} (

    {{ events_before_cutoffs() }}

),

scored as (

    select
        cutoff_at,
        'global' as scope,
        'all' as scope_value,
        item_key,
        sum({{ event_weight('event_type') }} * {{ decay('event_at', 'cutoff_at') }}) as score
    from events
    group by all

    union all

    select
        cutoff_at,
        'platform' as scope,
        platform as scope_value,
        item_key,
        sum({{ event_weight('event_type') }} * {{ decay('event_at', 'cutoff_at') }}) as score
    from events
    group by all

    union all

    select
        cutoff_at,
        'category' as scope,
        category_id as scope_value,
        item_key,
        sum({{ event_weight('event_type') }} * {{ decay('event_at', 'cutoff_at') }}) as score
    from events
    where category_id is not null
    group by all

),

ranked as (

    select
        *,
        row_number() over (
            partition by cutoff_at, scope, scope_value order by score desc, item_key asc
        ) as popularity_rank
    from scored
    qualify popularity_rank <= {{ int_var('popular_items_per_scope') }}

)

select
    ranked.cutoff_at,
    ranked.scope,
    ranked.scope_value,
    item_ids.item_id,
    ranked.score,
    ranked.popularity_rank
from ranked
inner join {{ ref('int_item_keys') }} as item_ids using (item_key)
