-- The export's time frame, one row: where its accepted commerce events start and end, and the
-- serving cutoff T that every feature is computed as of (var as_of, else the day after the last
-- event). The pipeline reads it to choose the label horizon before it builds any feature.
with bounds as (

    {% if var('as_of') %}
        select {{ timestamp_var('as_of') }} as serve_at
    {% else %}
        select date_trunc('day', max(event_at)) + interval 1 day as serve_at
        from {{ ref('int_line_items') }}
    {% endif %}

)

-- A cross join with the one-row bounds, not a join on event_at < serve_at: DuckDB plans an
-- inequality join as a range join, minutes on a few million rows.
select
    any_value(bounds.serve_at) as serve_at,
    min(line_items.event_at) filter (where line_items.event_at < bounds.serve_at) as first_event_at,
    max(line_items.event_at) filter (where line_items.event_at < bounds.serve_at) as last_event_at,
    count(*) filter (where line_items.event_at < bounds.serve_at and line_items.event_type = 'purchase')
        as n_purchase_lines,
    {{ string_var('model_version') }} as model_version
from {{ ref('int_line_items') }} as line_items
cross join bounds
