-- The points in time features are computed at: cutoff_index 0 is the serving cutoff T
-- (int_export_window); index k >= 1 is T - h - (k - 1) * s, labelled by the purchases in
-- [cutoff_at, label_end_at = cutoff_at + h). The stride s is h / cutoffs_per_horizon, rounded
-- up: 1 gives windows end to end, 2 gives twice as many windows in the same history, each
-- overlapping the next by half. The ranker trains on k = 1; model selection and the quality
-- gate replay the same recipe on the older cutoffs whose windows end by the one judged, so no
-- decision ever sees its own test window.
{% set h = int_var('horizon_days') | int %}
{% set per_horizon = int_var('cutoffs_per_horizon') | int %}
{% set s = (h + per_horizon - 1) // per_horizon %}

select
    indexes.k as cutoff_index,
    case
        when indexes.k = 0 then export_window.serve_at
        else export_window.serve_at - {{ days(h ~ ' + ' ~ s ~ ' * (indexes.k - 1)') }}
    end as cutoff_at,
    case when indexes.k > 0 then export_window.serve_at - {{ days(s ~ ' * (indexes.k - 1)') }} end as label_end_at,
    export_window.model_version -- the build these cutoffs belong to (build_version())
from {{ ref('int_export_window') }} as export_window
cross join range(0, {{ int_var('labelled_cutoffs') | int }} + 1) as indexes (k)
