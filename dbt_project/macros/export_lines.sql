{#- The fields of one CSV line (RFC 4180 quoting, no line ends inside a field): a list of text,
    empty fields as ''; NULL when the line does not split (e.g. a stray or unbalanced quote).
    Lines without a quote, nearly all of them, take the fast path. -#}
{% macro csv_fields(line) -%}
    {{ return(adapter.dispatch('csv_fields', 'recsys')(line)) }}
{%- endmacro %}
{% macro duckdb__csv_fields(line) -%}
    case
        when not contains({{ line }}, '"') then string_split({{ line }}, ',')
        when regexp_full_match({{ line }} || ',', '(("([^"]|"")*"|[^,"]*),)*')
            then list_transform(
                regexp_extract_all({{ line }} || ',', '("(?:[^"]|"")*"|[^,"]*),', 1),
                lambda field: case when starts_with(field, '"') then replace(field[2:-2], '""', '"') else field end)
    end
{%- endmacro %}
{#- The same expressions with the quoted field as an unrolled loop ("[^"]*(""[^"]*)*"): Java's
    regex engine recurses once per character of an alternation inside a repetition and
    overflows its stack on long quoted fields. -#}
{% macro spark__csv_fields(line) -%}
    case
        when not contains({{ line }}, '"') then split({{ line }}, ',', -1)
        when {{ line }} || ',' rlike '^(?:(?:"[^"]*+(?:""[^"]*+)*+"|[^,"]*+),)*+$'
            then transform(
                regexp_extract_all({{ line }} || ',', '("[^"]*(?:""[^"]*)*"|[^,"]*),', 1),
                field -> case when startswith(field, '"') then replace(substr(field, 2, length(field) - 2), '""', '"') else field end)
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
    {{ return(run_query(export_header_query()).columns[0].values() | list) }}
{%- endmacro %}

{#- The names of the header line of var input_path in their order (one column). -#}
{% macro export_header_query() -%}
    {{ return(adapter.dispatch('export_header_query', 'recsys')()) }}
{%- endmacro %}
{% macro duckdb__export_header_query() -%}
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
{%- endmacro %}
{#- Spark's text reader keeps a byte order mark: it is dropped here. -#}
{% macro spark__export_header_query() -%}
    select trim(name) as name
    from (
        select {{ csv_fields("regexp_replace(value, '^\uFEFF', '')") }} as fields
        from text.{{ backquoted_var('input_path') }}
        limit 1
    ) as first_line
    lateral view posexplode(fields) named as position, name
    order by position
{%- endmacro %}

{#- One column of the export from a line's fields: its position comes from the header (a list of
    names, export_columns()). The text as written ('' when empty); NULL when the line is short
    or the export has no such column. -#}
{% macro export_field(fields, header, name) -%}
    {%- if name in header -%}
        {{ list_element(fields, header.index(name) + 1) }}
    {%- else -%}
        null::varchar
    {%- endif -%}
{%- endmacro %}

{#- The export's lines, numbered from 1 after the header line: event_row_id, line (up to a unit
    separator; NULL for a blank line) and overflow (after it). DuckDB reads the source as
    configured (_ab_test__sources.yml); Spark's text reader gives one row per line as written. -#}
{% macro export_lines() -%}
    {{ return(adapter.dispatch('export_lines', 'recsys')()) }}
{%- endmacro %}
{% macro duckdb__export_lines() -%}
    select
        row_number() over () as event_row_id,
        line,
        overflow
    from {{ source('ab_test', 'events') }}
{%- endmacro %}
{#- Spark numbers lines in file order (monotonically_increasing_id follows the file within and
    across its splits); the first is the header. -#}
{% macro spark__export_lines() -%}
    select
        line_number - 1 as event_row_id,
        nullif(substring_index(value, chr(31), 1), '') as line,
        case when instr(value, chr(31)) > 0 then substr(value, instr(value, chr(31)) + 1) end as overflow
    from (
        select
            value,
            row_number() over (order by monotonically_increasing_id()) as line_number
        from text.{{ backquoted_var('input_path') }}
    ) as numbered
    where line_number > 1
{%- endmacro %}

{#- Saves the lines DuckDB's reader set aside (store_rejects, same connection) for
    stg_ab_test__unreadable_lines. Spark's text reader sets none aside: the table is empty. -#}
{% macro save_reader_rejects(schema) -%}
    {{ return(adapter.dispatch('save_reader_rejects', 'recsys')(schema)) }}
{%- endmacro %}
{% macro duckdb__save_reader_rejects(schema) -%}
    create or replace table {{ schema }}.ab_test_reader_rejects as
    select line as line_number, error_type, csv_line, error_message from reject_errors
{%- endmacro %}
{% macro spark__save_reader_rejects(schema) -%}
    create table if not exists {{ schema }}.ab_test_reader_rejects (
        line_number bigint, error_type string, csv_line string, error_message string
    )
{%- endmacro %}
