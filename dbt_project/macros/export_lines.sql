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

{#- The export's header (8 or 10 column names, any order): var export_columns when given (the
    pipeline passes the header it checked in Python), else the first line of var input_path, read
    when the model runs, so that a plain `dbt build` needs no var. That line is read with the
    source's options (_ab_test__sources.yml) but as a line, not a header, and split like any
    line; a byte order mark is dropped by the reader, spaces around names by trim. -#}
{% macro export_columns() -%}
    {%- set given = var('export_columns', none) -%}
    {#- A comma-separated string works too (sqlfluff's .sqlfluff can only pass strings). -#}
    {%- if given is string -%}
        {%- set given = given.split(',') | map('trim') | list -%}
    {%- endif -%}
    {%- if given is not none or not execute -%}
        {{ return(given or []) }}
    {%- endif -%}
    {%- set header_sql -%}
        select unnest(list_transform(fields, lambda name: trim(name))) as name, unnest(range(len(fields))) as position
        from (
            select {{ csv_fields('line') }} as fields
            from read_csv({{ string_var('input_path') }}, header = false, auto_detect = false,
                 columns = struct_pack(line := 'VARCHAR', overflow := 'VARCHAR'), delim = E'\x1f',
                 quote = '', escape = '', null_padding = true, strict_mode = false,
                 max_line_size = 2000000)
            limit 1
        )
        order by position
    {%- endset -%}
    {{ return(run_query(header_sql).columns[0].values() | list) }}
{%- endmacro %}

{#- One column of the export from a line's fields: its position comes from the header (a list of
    names, export_columns()). The text as written ('' when empty); NULL when the line is short
    or the export has no such column. -#}
{% macro export_field(fields, header, name) -%}
    {%- if name in header -%}
        {{ fields }}[{{ header.index(name) + 1 }}]
    {%- else -%}
        null::varchar
    {%- endif -%}
{%- endmacro %}
