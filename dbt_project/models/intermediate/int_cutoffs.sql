-- The points in time features are computed at: cutoff_index 0 is the serving cutoff T
-- (int_export_window); index k >= 1 is T - k * h, labelled by the purchases in
-- [cutoff_at, label_end_at). The ranker trains on k = 1; model selection and the quality gate
-- replay the same recipe on older cutoffs (k >= 2), so no decision ever sees its own test window.
{% set h = int_var('horizon_days') | int %}

select
    indexes.k as cutoff_index,
    export_window.serve_at - {{ days(h ~ ' * indexes.k') }} as cutoff_at,
    case when indexes.k > 0 then export_window.serve_at - {{ days(h ~ ' * (indexes.k - 1)') }} end as label_end_at,
    export_window.model_version -- the build these cutoffs belong to (build_version())
from {{ ref('int_export_window') }} as export_window
cross join range(0, {{ int_var('labelled_cutoffs') | int }} + 1) as indexes (k)
