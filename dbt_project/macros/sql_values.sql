{#- A list var as the items of an SQL list: sql_values(['a', "b'c"]) gives 'a', 'b''c' (each
    value a string literal, its quotes doubled), e.g. `platform in ({{ sql_values(var('platforms')) }})`. -#}
{% macro sql_values(values) -%}
    {%- if values is string or values is not iterable or values | length == 0 -%}
        {{ exceptions.raise_compiler_error("sql_values needs a non-empty list, got " ~ (values | string)[:40] | tojson) }}
    {%- endif -%}
    {%- for value in values -%}
        '{{ value | string | replace("'", "''") }}'{{ ", " if not loop.last }}
    {%- endfor -%}
{%- endmacro %}
