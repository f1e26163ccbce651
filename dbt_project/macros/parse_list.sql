{#- True when the text is a list of integers as the export writes them: '[1, -2]' or '[]'. -#}
{% macro is_integer_list(column) -%}
    regexp_full_match(coalesce({{ column }}, ''), '\[\s*(-?[0-9]+(\s*,\s*-?[0-9]+)*)?\s*\]')
{%- endmacro %}

{#- True when the text is a list of 128-bit decimal ids (1-39 digits each), or '[]'. -#}
{% macro is_id_list(column) -%}
    regexp_full_match(coalesce({{ column }}, ''), '\[\s*([0-9]{1,39}(\s*,\s*[0-9]{1,39})*)?\s*\]')
{%- endmacro %}

{#- A 128-bit decimal id kept as text (ids are names, not numbers: text joins and prints fast,
    while DuckDB's UHUGEINT is slow to print); NULL when the value is not 1-39 digits.
    Untrimmed ids (the normal case) are matched without calling trim. -#}
{% macro decimal_id(column) -%}
    case when regexp_full_match({{ column }}, '[0-9]{1,39}') then {{ column }}
         when regexp_full_match(trim({{ column }}), '[0-9]{1,39}') then trim({{ column }}) end
{%- endmacro %}
