{#- The fields of one CSV line (RFC 4180 quoting, no line ends inside a field): a list of text,
    empty fields as ''; NULL when the line does not split (e.g. a stray or unbalanced quote).
    Lines without a quote, nearly all of them, take the fast path. -#}
{% macro csv_fields(line) -%}
    case
        when not contains({{ line }}, '"') then string_split({{ line }}, ',')
        when regexp_full_match({{ line }} || ',', '(("([^"]|"")*"|[^,"]*),)*')
            then list_transform(
                regexp_extract_all({{ line }} || ',', '("(?:[^"]|"")*"|[^,"]*),', 1),
                lambda field: case when starts_with(field, '"') then replace(field[2:-2], '""', '"') else field end)
    end
{%- endmacro %}

{#- One column of the export from a line's fields: its position comes from the header (var
    export_columns, any order). The text as written ('' when empty); NULL when the line is short
    or the export has no such column. -#}
{% macro export_field(fields, name) -%}
    {%- set header = var('export_columns') -%}
    {%- if name in header -%}
        {{ fields }}[{{ header.index(name) + 1 }}]
    {%- else -%}
        null::varchar
    {%- endif -%}
{%- endmacro %}
