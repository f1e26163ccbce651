-- The points in time features are computed at. T is the serving cutoff (var as_of, or the day
-- after the last event); the ranker trains on features at T - h with labels in [T - h, T), and
-- offline evaluation repeats that one horizon earlier.
{% set h = var('horizon_days') | int %}

with serving as (

    {% if var('as_of') %}
    select timestamp '{{ var("as_of") }}' as serve_at
    {% else %}
    select date_trunc('day', max(event_at)) + interval 1 day as serve_at
    from {{ ref('int_line_items') }}
    {% endif %}

)

select 'evaluation' as cutoff_role, serve_at - interval {{ 2 * h }} day as cutoff_at,
       serve_at - interval {{ h }} day as label_end_at
from serving
union all
select 'training', serve_at - interval {{ h }} day, serve_at from serving
union all
select 'serving', serve_at, null::timestamp from serving
