-- This run's quality next to the previous run's: one row. Cold users are the users with
-- history at the serving cutoff who get no personal list (the marketplace shows them the
-- fallback list); catalogue coverage is the share of the items with events that some published
-- list (personal or fallback) shows; list overlap is the mean Jaccard similarity of a user's
-- list now and before, over the kept users listed in both runs; the score shift is the PSI of
-- the published scores (monitor_feature_stability); NDCG is the holdout NDCG@K the run log
-- (model_runs) records, and its drop the previous run's minus this one's.
with counts as (

    select
        run_rank,
        max(value) filter (where measure = 'count:users') as n_users,
        max(value) filter (where measure = 'count:cold_users') as n_cold_users,
        max(value) filter (where measure = 'count:items_with_events') as n_items_with_events,
        max(value) filter (where measure = 'count:published_items') as n_published_items,
        max(value) filter (where measure = 'ndcg') as ndcg
    from {{ ref('monitor_runs') }}
    group by run_rank

),

lists as (

    select distinct
        run_rank,
        user_key,
        item_id
    from {{ ref('monitor_runs') }}
    where measure = 'list'

),

common_users as (

    select user_key from lists
    where run_rank = 1
    intersect
    select user_key from lists
    where run_rank = 2

),

per_user as (

    select
        lists.user_key,
        count(distinct lists.item_id) filter (where lists.run_rank = 1) as n_current,
        count(distinct lists.item_id) filter (where lists.run_rank = 2) as n_previous,
        count(*) - count(distinct lists.item_id) as n_kept
    from lists
    inner join common_users on lists.user_key = common_users.user_key
    group by lists.user_key

),

overlap as (

    select
        avg(n_kept / (n_current + n_previous - n_kept)) as list_overlap,
        count(*) as n_overlap_users
    from per_user

),

runs as (

    {{ compared_runs() }}

)

select
    runs.run_id,
    runs.previous_run_id,
    now_counts.n_users::bigint as n_users,
    now_counts.n_cold_users / nullif(now_counts.n_users, 0) as cold_user_share,
    before_counts.n_cold_users / nullif(before_counts.n_users, 0) as previous_cold_user_share,
    now_counts.n_published_items / nullif(now_counts.n_items_with_events, 0) as catalogue_coverage,
    before_counts.n_published_items / nullif(before_counts.n_items_with_events, 0) as previous_catalogue_coverage,
    overlap.list_overlap,
    overlap.n_overlap_users,
    score_stability.psi as score_psi,
    now_counts.ndcg,
    before_counts.ndcg as previous_ndcg,
    before_counts.ndcg - now_counts.ndcg as ndcg_drop
from runs
left join counts as now_counts on now_counts.run_rank = 1
left join counts as before_counts on before_counts.run_rank = 2
left join {{ ref('monitor_feature_stability') }} as score_stability on score_stability.feature = 'score'
cross join overlap
where runs.run_id is not null
