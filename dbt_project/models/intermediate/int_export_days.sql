-- Every day the export's rows are dated, and whether it lies in the export's dense span: dates
-- are judged against the export's own body, never the wall clock (an old export is not wrong,
-- a few rows dated "today" in it are). int_events__validated quarantines rows dated outside the
-- span as outlier_date, so they cannot move the serving cutoff.
--
-- The rule, on the rows per day (one row a day, so cheap):
-- 1. the body: the days holding the middle 98 % of the rows in date order (1 % trimmed at each
--    end), whatever the gaps inside it;
-- 2. the span: the body widened at both ends, day by dated day, as long as the next dated day is
--    at most var outlier_gap_days away. A day beyond a longer silence is an outlier.
-- A sparse log (a year with a purchase every few days) stays one span; a handful of rows far
-- from the rest do not. In a small export (under 100 rows) 1 % is less than a row: the body is
-- every day, nothing is judged an outlier.
{% set trimmed_share = 0.01 %}
with days as (

    select
        event_date,
        count(*) as n_rows
    from {{ ref('stg_ab_test__events') }}
    where event_date is not null
    group by event_date

),

silences as (

    select
        *,
        coalesce(
            {{ date_distance('lag(event_date) over (order by event_date)', 'event_date') }}
            > {{ int_var('outlier_gap_days') }}, false
        ) as after_silence
    from days

),

runs as (

    -- A run: dated days with no silence longer than the gap between neighbours.
    select
        *,
        sum(after_silence::int) over (order by event_date) as run,
        sum(n_rows) over (order by event_date) as rows_through,
        sum(n_rows) over () as total_rows
    from silences

),

body as (

    -- The runs of the first and last day of the body (the day holding its first and last row).
    select
        min(run) filter (where rows_through > {{ trimmed_share }} * total_rows) as first_run,
        max(run) filter (where rows_through - n_rows < {{ 1 - trimmed_share }} * total_rows) as last_run
    from runs

)

select
    runs.event_date,
    runs.n_rows,
    runs.run,
    runs.run between body.first_run and body.last_run as in_span
from runs
cross join body
