-- Per publication and list kind: the share of exposed users who viewed, carted or bought an item
-- shown to them within var outcome_days of their first exposure, and the share of their purchase
-- revenue in that window from such items. Users whose window the export does not cover yet are
-- counted apart (users_incomplete) and left out of the shares.
select
    model_version,
    list_kind,
    any_value(experiment_group) as experiment_group,
    count(*) filter (where window_complete) as users,
    count(*) filter (where not window_complete) as users_incomplete,
    avg(viewed_shown::integer) filter (where window_complete) as viewed_share,
    avg(carted_shown::integer) filter (where window_complete) as carted_share,
    avg(bought_shown::integer) filter (where window_complete) as bought_share,
    avg(bought_any::integer) filter (where window_complete) as bought_any_share,
    sum(shown_revenue_rub) filter (where window_complete) as shown_revenue_rub,
    sum(revenue_rub) filter (where window_complete) as revenue_rub,
    sum(shown_revenue_rub) filter (where window_complete)
    / nullif(sum(revenue_rub) filter (where window_complete), 0) as shown_revenue_share,
    any_value(outcome_days) as outcome_days
from {{ ref('outcomes_by_user') }}
group by model_version, list_kind
