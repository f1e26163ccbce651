{#- True when the text is a list of integers as the export writes them: '[1, -2]' or '[]'. -#}
{% macro is_integer_list(column) -%}
    {{ full_match("coalesce(" ~ column ~ ", '')", '\[\s*(-?[0-9]+(\s*,\s*-?[0-9]+)*)?\s*\]') }}
{%- endmacro %}

{#- True when the text is a list of 128-bit decimal ids (1-39 digits each), or '[]'. -#}
{% macro is_id_list(column) -%}
    {{ full_match("coalesce(" ~ column ~ ", '')", '\[\s*([0-9]{1,39}(\s*,\s*[0-9]{1,39})*)?\s*\]') }}
{%- endmacro %}

{#- A 128-bit decimal id kept as text (ids are names, not numbers: text joins and prints fast,
    while DuckDB's UHUGEINT is slow to print); NULL when the value is not 1-39 digits.
    Untrimmed ids (the normal case) are matched without calling trim. -#}
{% macro decimal_id(column) -%}
    case when {{ full_match(column, '[0-9]{1,39}') }} then {{ column }}
         when {{ full_match('trim(' ~ column ~ ')', '[0-9]{1,39}') }} then trim({{ column }}) end
{%- endmacro %}

{#- True when the whole text matches the regular expression (NULL for NULL text). -#}
{% macro full_match(text, pattern) -%}
    {{ return(adapter.dispatch('full_match', 'recsys')(text, pattern)) }}
{%- endmacro %}
{% macro duckdb__full_match(text, pattern) -%} regexp_full_match({{ text }}, '{{ pattern }}') {%- endmacro %}
{% macro spark__full_match(text, pattern) -%} {{ text }} rlike '^(?:{{ pattern }})$' {%- endmacro %}

{#- A list as the export writes it ('[1, 2]') parsed into a list of element_type (varchar or
    bigint); an element that does not parse is NULL. DuckDB casts list text natively; Spark
    splits the text inside the brackets (the text was checked by is_id_list / is_integer_list). -#}
{% macro parse_list(column, element_type) -%}
    {{ return(adapter.dispatch('parse_list', 'recsys')(column, element_type)) }}
{%- endmacro %}
{% macro duckdb__parse_list(column, element_type) -%} try_cast({{ column }} as {{ element_type }}[]) {%- endmacro %}
{% macro spark__parse_list(column, element_type) -%}
    case
        when {{ column }} rlike '^\s*\[\s*\]\s*$' then array()
        else transform(
            split(regexp_extract({{ column }}, '^\s*\[(.*)\]\s*$', 1), ','),
            element -> try_cast(trim(element) as {{ 'string' if element_type == 'varchar' else element_type }}))
    end
{%- endmacro %}

{#- The instant of a text like '2023-08-01 10:00:00+00:00' as a UTC timestamp; NULL when it does not parse. -#}
{% macro parse_utc_time(column) -%}
    {{ return(adapter.dispatch('parse_utc_time', 'recsys')(column)) }}
{%- endmacro %}
{#- epoch_us avoids a per-row time zone lookup. -#}
{% macro duckdb__parse_utc_time(column) -%}
    make_timestamp(epoch_us(try_strptime({{ column }}, '%Y-%m-%d %H:%M:%S%z')))
{%- endmacro %}
{% macro spark__parse_utc_time(column) -%}
    try_to_timestamp({{ column }}, 'yyyy-MM-dd HH:mm:ssXXX')
{%- endmacro %}
