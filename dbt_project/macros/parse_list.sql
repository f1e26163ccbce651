{#- List text such as '[1, 2]' -> list of trimmed element strings; '[]' -> []. -#}
{% macro parse_list(column) -%}
    list_transform(
        list_filter(string_split(trim({{ column }}, '[] '), ','), lambda x: trim(x) <> ''),
        lambda x: trim(x)
    )
{%- endmacro %}

{#- True when the text is a well-formed list of unsigned or signed integers (or '[]'). -#}
{% macro is_integer_list(column) -%}
    regexp_full_match(coalesce({{ column }}, ''), '\[\s*(-?\d+(\s*,\s*-?\d+)*)?\s*\]')
{%- endmacro %}
