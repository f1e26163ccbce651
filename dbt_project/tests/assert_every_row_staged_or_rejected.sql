-- Conservation: every line of the export (blank lines aside) is either used (as line items or as
-- activity) or quarantined with a reason, exactly once: staging reads one row per line, and the
-- lines the reader cannot take are counted from its rejects. Returns a row (a failure) when the
-- counts disagree.
with exported as (
    select
        (select count(*) from {{ ref('stg_ab_test__events') }})
        + (select count(*) from {{ ref('stg_ab_test__unreadable_lines') }}) as n
),

used as (
    select count(*) as n from {{ ref('int_events__validated') }}
    where reject_reason is null
),

used_commerce as (
    select count(distinct event_row_id) as n from {{ ref('int_line_items') }}
),

accepted_commerce as (
    select count(*) as n from {{ ref('int_events__validated') }}
    where reject_reason is null and is_commerce
),

activity as (
    select sum(n_events) as n from {{ ref('int_user_activity') }}
),

rejected as (
    select count(*) as n from {{ ref('rejected_rows') }}
)

select
    exported.n as exported,
    used.n as used,
    rejected.n as rejected,
    used_commerce.n as commerce_rows_with_items,
    accepted_commerce.n as accepted_commerce_rows,
    activity.n as activity_rows
from exported, used, rejected, used_commerce, accepted_commerce, activity
where
    exported.n <> used.n + rejected.n
    or rejected.n <> (
        select count(*) from {{ ref('int_events__validated') }} as validated
        where validated.reject_reason is not null
    ) + (select count(*) from {{ ref('stg_ab_test__unreadable_lines') }})
    or used_commerce.n <> accepted_commerce.n
    or activity.n <> used.n
