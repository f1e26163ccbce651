-- Population stability index (PSI) of each main feature (and of the published scores) between
-- the previous run and this one: the previous run's deciles are the bins, and
-- PSI = sum over bins of (share now - share before) * ln(share now / share before), with empty
-- bins counted as 0.0001 so that the logarithm stays finite. Below 0.1 is stable, above 0.25 a
-- shift worth a look. NULL when there is no previous run with values of the feature.
with raw_values as (

    select
        run_rank,
        substr(measure, length('feature:') + 1) as feature,
        value
    from {{ ref('monitor_runs') }}
    where starts_with(measure, 'feature:') and value is not null

),

feature_values as (

    select
        run_rank,
        feature,
        value,
        count(*) as n
    from raw_values
    group by all

),

edges as (

    -- Repeated deciles (a feature that is mostly 0) are one edge: fewer, wider bins.
    select
        feature,
        unnest(list_distinct(quantile_disc(value, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]))) as edge
    from raw_values
    where run_rank = 2
    group by feature

),

binned as (

    -- A value's bin is the number of edges below it.
    select
        feature_values.feature,
        feature_values.run_rank,
        feature_values.value,
        feature_values.n,
        count(edges.edge) as bin
    from feature_values
    left join edges on feature_values.feature = edges.feature and feature_values.value > edges.edge
    where feature_values.feature in (select previous_edges.feature from edges as previous_edges)
    group by all

),

bins as (

    select
        feature,
        bin,
        coalesce(sum(n) filter (where run_rank = 1), 0) as n_current,
        coalesce(sum(n) filter (where run_rank = 2), 0) as n_previous
    from binned
    group by feature, bin

),

shares as (

    select
        feature,
        greatest(n_current / nullif(sum(n_current) over (partition by feature), 0), 0.0001) as share_current,
        greatest(n_previous / sum(n_previous) over (partition by feature), 0.0001) as share_previous
    from bins

),

psi as (

    select
        feature,
        sum((share_current - share_previous) * ln(share_current / share_previous)) as psi
    from shares
    group by feature

),

current_features as (

    select
        feature,
        sum(n) as n_current
    from feature_values
    where run_rank = 1
    group by feature

),

runs as (

    {{ compared_runs() }}

)

select
    runs.run_id,
    runs.previous_run_id,
    current_features.feature,
    current_features.n_current::bigint as n_values,
    psi.psi
from current_features
cross join runs
left join psi on current_features.feature = psi.feature
