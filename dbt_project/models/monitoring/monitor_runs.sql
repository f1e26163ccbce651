-- The two runs the monitors compare: this run's snapshot (run_rank 1) and the latest earlier
-- one kept in the home (run_rank 2; none on a first run). Run ids are the runs' versions,
-- timestamps that sort in time order.
with snapshots as (

    select * from {{ ref('monitor_snapshot') }}
    union all
    select * from ({{ monitor_history() }}) as history
    where history.run_id not in (select current_run.run_id from {{ ref('monitor_snapshot') }} as current_run)

),

ranked as (

    select
        run_id,
        dense_rank() over (order by run_id desc) as run_rank
    from (select distinct run_id from snapshots) as runs

)

select
    snapshots.run_id,
    ranked.run_rank,
    snapshots.measure,
    snapshots.value,
    snapshots.user_key,
    snapshots.item_id
from snapshots
inner join ranked on snapshots.run_id = ranked.run_id
where ranked.run_rank <= 2
