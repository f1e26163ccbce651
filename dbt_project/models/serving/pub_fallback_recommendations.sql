-- Cold start: what is popular now, per platform and overall ('all'), for users without history.
-- A platform without its own events gets the overall list, so every platform always has one.
with popular as (

    select
        case popularity.scope when 'global' then 'all' else popularity.scope_value end as platform,
        popularity.item_id,
        popularity.popularity_rank as rank,
        popularity.score
    from {{ ref('item_popularity') }} as popularity
    where
        popularity.cutoff_at = {{ serving_cutoff() }}
        and popularity.scope in ('global', 'platform')
        and popularity.popularity_rank <= {{ int_var('top_n') }}

),

platforms as (

    select {{ unnest_values(var('platforms') + ['all']) }} as platform

),

lists as (

    select
        platforms.platform,
        coalesce(own.item_id, overall.item_id) as item_id,
        coalesce(own.rank, overall.rank) as rank,
        coalesce(own.score, overall.score) as score,
        case
            when own.item_id is null and platforms.platform <> 'all'
                then 'popular_overall'
            else 'popular_now'
        end as reason
    from platforms
    left join popular as own on platforms.platform = own.platform
    left join popular as overall
        on overall.platform = 'all' and own.item_id is null and platforms.platform <> 'all'

)

select
    platform,
    item_id,
    rank::integer as rank,
    score,
    reason,
    {{ publication_stamp() }}
from lists
where item_id is not null
