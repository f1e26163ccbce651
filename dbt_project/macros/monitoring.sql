{#- The snapshots of earlier runs (var monitor_history, a glob of Parquet files the pipeline
    keeps in the home), or none: empty, with the snapshot's columns, when the var is empty, so a
    first run and a plain `dbt build` have nothing to compare and every monitor passes. -#}
{% macro monitor_history() -%}
    {%- if var('monitor_history') | string | trim -%}
        select
            run_id::varchar as run_id,
            measure::varchar as measure,
            value::double as value,
            user_key::varchar as user_key,
            item_id::varchar as item_id
        from read_parquet({{ string_var('monitor_history') }})
    {%- else -%}
        select
            run_id,
            measure,
            value,
            user_key,
            item_id
        from {{ ref('monitor_snapshot') }}
        where false
    {%- endif %}
{%- endmacro %}

{#- The run's holdout NDCG (var run_ndcg), or NULL when it is not known (a cold-start run). -#}
{% macro run_ndcg() -%}
    {%- if var('run_ndcg') | string | trim -%}
        {{ number_var('run_ndcg') }}::double
    {%- else -%}
        null::double
    {%- endif %}
{%- endmacro %}

{#- One row: this run's id and the run it is compared with (NULL on a first run), from monitor_runs. -#}
{% macro compared_runs() -%}
    select
        max(run_id) filter (where run_rank = 1) as run_id,
        max(run_id) filter (where run_rank = 2) as previous_run_id
    from {{ ref('monitor_runs') }}
{%- endmacro %}
