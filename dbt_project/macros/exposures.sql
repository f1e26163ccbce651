{#- Whether the exposure log (var exposures_path: date=YYYY-MM-DD/part-*.parquet, written by
    ml/serving/exposures.py) holds any file. read_parquet fails on a glob that matches nothing,
    so stg_exposures reads the log only when it does, and is empty otherwise: a home that has
    served nothing yet builds as before. While dbt parses (no query can run), the answer is yes,
    so the source is in the graph. -#}
{% macro exposures_logged() -%}
    {%- if not execute %}{{ return(true) }}{% endif -%}
    {%- set glob_sql -%}
        select count(*) > 0 from glob({{ exposures_glob() }})
    {%- endset -%}
    {{ return(run_query(glob_sql).columns[0].values()[0]) }}
{%- endmacro %}

{#- The log's files as a string literal (quotes doubled), as the source exposures.exposure_log reads them. -#}
{% macro exposures_glob() -%}
    '{{ (var("exposures_path") | string).rstrip("/") | replace("'", "''") }}/*/*.parquet'
{%- endmacro %}
