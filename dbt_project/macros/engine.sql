{#- The SQL that differs between the engines the project builds on: DuckDB (target build) and
    Spark (target spark, dbt-spark). Models call these macros and stay one text for both; each
    macro dispatches to duckdb__<name> or spark__<name> (adapter.dispatch). The Spark session
    reads string literals raw (profiles.yml), as DuckDB does, so a regular expression is one text.
    Staging's own differences are in export_lines.sql and parse_list.sql. -#}

{#- A CTE DuckDB must inline rather than copy (a big table read by several branches); Spark
    never copies a CTE, and has no such keyword. -#}
{% macro not_materialized() -%}
    {{ return(adapter.dispatch('not_materialized', 'recsys')()) }}
{%- endmacro %}
{% macro duckdb__not_materialized() -%} not materialized {%- endmacro %}
{% macro spark__not_materialized() -%} {%- endmacro %}

{#- An interval of n days, n an integer expression. -#}
{% macro days(n) -%}
    {{ return(adapter.dispatch('days', 'recsys')(n)) }}
{%- endmacro %}
{% macro duckdb__days(n) -%} to_days({{ n }}) {%- endmacro %}
{% macro spark__days(n) -%} make_dt_interval({{ n }}) {%- endmacro %}

{#- Days from one timestamp to a later one, with the fraction (to the second). -#}
{% macro days_between(start, end) -%}
    {{ return(adapter.dispatch('days_between', 'recsys')(start, end)) }}
{%- endmacro %}
{% macro duckdb__days_between(start, end) -%}
    date_diff('second', {{ start }}, {{ end }}) / 86400.0
{%- endmacro %}
{#- As a double: Spark divides by a decimal literal in decimal, to 7 digits here. -#}
{% macro spark__days_between(start, end) -%}
    cast(timestampdiff(second, {{ start }}, {{ end }}) as double) / 86400
{%- endmacro %}

{#- Whole calendar days from one date to another. -#}
{% macro date_distance(start, end) -%}
    {{ return(adapter.dispatch('date_distance', 'recsys')(start, end)) }}
{%- endmacro %}
{% macro duckdb__date_distance(start, end) -%} date_diff('day', {{ start }}, {{ end }}) {%- endmacro %}
{% macro spark__date_distance(start, end) -%} datediff({{ end }}, {{ start }}) {%- endmacro %}

{#- Text values as rows of one column (select-list item: one row per value). -#}
{% macro unnest_values(values) -%}
    {{ return(adapter.dispatch('unnest_values', 'recsys')(values)) }}
{%- endmacro %}
{% macro duckdb__unnest_values(values) -%} unnest([{{ sql_values(values) }}]) {%- endmacro %}
{% macro spark__unnest_values(values) -%} explode(array({{ sql_values(values) }})) {%- endmacro %}

{#- The value whose weight is largest; a tie goes to the larger value (max() of a pair orders by
    the weight, then the value), so that a rebuild gives the same answer. -#}
{% macro value_of_max(value, weight) -%}
    {{ return(adapter.dispatch('value_of_max', 'recsys')(value, weight)) }}
{%- endmacro %}
{% macro duckdb__value_of_max(value, weight) -%}
    max(struct_pack(w := {{ weight }}, v := {{ value }})).v
{%- endmacro %}
{% macro spark__value_of_max(value, weight) -%}
    max(named_struct('w', {{ weight }}, 'v', {{ value }})).v
{%- endmacro %}

{#- The continuous quantile (interpolated between the two nearest values). -#}
{% macro quantile(column, fraction) -%}
    {{ return(adapter.dispatch('quantile', 'recsys')(column, fraction)) }}
{%- endmacro %}
{% macro duckdb__quantile(column, fraction) -%} quantile_cont({{ column }}, {{ fraction }}) {%- endmacro %}
{% macro spark__quantile(column, fraction) -%} percentile({{ column }}, {{ fraction }}) {%- endmacro %}

{#- Text as one column type of the engine, e.g. a NULL of that type. -#}
{% macro text_type() -%}
    {{ return(adapter.dispatch('text_type', 'recsys')()) }}
{%- endmacro %}
{% macro duckdb__text_type() -%} varchar {%- endmacro %}
{% macro spark__text_type() -%} string {%- endmacro %}

{#- Lists (DuckDB LIST, Spark ARRAY). Positions count from 1; a position past the end is NULL. -#}
{% macro list_length(list) -%}
    {{ return(adapter.dispatch('list_length', 'recsys')(list)) }}
{%- endmacro %}
{% macro duckdb__list_length(list) -%} len({{ list }}) {%- endmacro %}
{% macro spark__list_length(list) -%} size({{ list }}) {%- endmacro %}

{% macro list_element(list, position) -%}
    {{ return(adapter.dispatch('list_element', 'recsys')(list, position)) }}
{%- endmacro %}
{% macro duckdb__list_element(list, position) -%} {{ list }}[{{ position }}] {%- endmacro %}
{% macro spark__list_element(list, position) -%} try_element_at({{ list }}, {{ position }}) {%- endmacro %}

{#- The elements from a position on; an empty list when there are none. -#}
{% macro list_tail(list, position) -%}
    {{ return(adapter.dispatch('list_tail', 'recsys')(list, position)) }}
{%- endmacro %}
{% macro duckdb__list_tail(list, position) -%}
    case when len({{ list }}) >= {{ position }} then {{ list }}[{{ position }}:] else [] end
{%- endmacro %}
{% macro spark__list_tail(list, position) -%}
    case when size({{ list }}) >= {{ position }} then slice({{ list }}, {{ position }}, size({{ list }})) else array() end
{%- endmacro %}

{#- Elements that are not NULL. -#}
{% macro list_count(list) -%}
    {{ return(adapter.dispatch('list_count', 'recsys')(list)) }}
{%- endmacro %}
{% macro duckdb__list_count(list) -%} list_count({{ list }}) {%- endmacro %}
{% macro spark__list_count(list) -%} size(array_compact({{ list }})) {%- endmacro %}

{% macro list_min(list) -%}
    {{ return(adapter.dispatch('list_min', 'recsys')(list)) }}
{%- endmacro %}
{% macro duckdb__list_min(list) -%} list_min({{ list }}) {%- endmacro %}
{% macro spark__list_min(list) -%} array_min({{ list }}) {%- endmacro %}

{% macro list_max(list) -%}
    {{ return(adapter.dispatch('list_max', 'recsys')(list)) }}
{%- endmacro %}
{% macro duckdb__list_max(list) -%} list_max({{ list }}) {%- endmacro %}
{% macro spark__list_max(list) -%} array_max({{ list }}) {%- endmacro %}

{#- The elements joined into one text. -#}
{% macro list_join(list, separator) -%}
    {{ return(adapter.dispatch('list_join', 'recsys')(list, separator)) }}
{%- endmacro %}
{% macro duckdb__list_join(list, separator) -%} array_to_string({{ list }}, {{ separator }}) {%- endmacro %}
{% macro spark__list_join(list, separator) -%} array_join({{ list }}, {{ separator }}) {%- endmacro %}

{#- One row per position 1 .. length of a non-empty list (select-list item). -#}
{% macro list_positions(list) -%}
    {{ return(adapter.dispatch('list_positions', 'recsys')(list)) }}
{%- endmacro %}
{% macro duckdb__list_positions(list) -%} unnest(range(1, len({{ list }}) + 1)) {%- endmacro %}
{% macro spark__list_positions(list) -%} explode(sequence(1, size({{ list }}))) {%- endmacro %}
