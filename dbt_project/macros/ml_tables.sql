{#- The tables the Python steps write into the build database between dbt runs (source ml), made
    empty when missing (on-run-start), so that dbt builds on its own: before any scoring, the
    serving models build with no personal lists. Their columns and types are the source's
    (_ml__sources.yml; varchar is the engine's text type); the scoring step replaces the table with its lists (ml/scoring.py). -#}
{% macro create_missing_ml_tables() -%}
    {%- if not execute %}{{ return('') }}{% endif %}  {#- the graph exists once the run executes #}
    {%- for node in graph.sources.values() if node.source_name == 'ml' %}
    create table if not exists {{ api.Relation.create(database=node.database, schema=node.schema,
                                                      identifier=node.identifier) }} (
        {%- for column in node.columns.values() %}
        {{ adapter.quote(column.name) }} {{ text_type() if column.data_type == 'varchar' else column.data_type }}{{ "," if not loop.last }}
        {%- endfor %}
    );
    {%- endfor %}
{%- endmacro %}
