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
    pipeline passes the header it checked in Python), else the first line of the first file, read
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

{#- The names of the header line of the export's first file in their order (one column). -#}
{% macro export_header_query() -%}
    {{ return(adapter.dispatch('export_header_query', 'recsys')()) }}
{%- endmacro %}
{% macro duckdb__export_header_query() -%}
    select unnest(list_transform(fields, lambda name: trim(name))) as name, unnest(range(len(fields))) as position
    from (
        select {{ csv_fields('line') }} as fields
        from read_csv({{ sql_values(export_files()[:1]) }}, header = false, auto_detect = false,
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

{#- The export's files in order: var input_files (several files with one header, e.g. one a
    day), else var input_path alone. -#}
{% macro export_files() -%}
    {%- set files = var('input_files', [var('input_path')]) -%}
    {{ return([files] if files is string else files) }}
{%- endmacro %}

{#- Which files staging reads in this build, and their numbers. Each file is a dict: path,
    version (size and modification time), number (event_row_id = number * 10^10 + the line's
    position in its file) and read. A file keeps the number it was first staged with; a new one
    takes the next. A full build reads every file; an incremental one (DuckDB) only the files
    not staged yet or changed since, so a night's run parses just the new day. -#}
{% macro export_file_plan() -%}
    {{ return(adapter.dispatch('export_file_plan', 'recsys')()) }}
{%- endmacro %}
{% macro duckdb__export_file_plan() -%}
    {%- set files = export_files() -%}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set versions = {} -%}
    {%- for row in run_query("select filename, size || '/' || epoch_us(last_modified) from read_blob(["
                             ~ sql_values(files) ~ "])") -%}
        {%- do versions.update({row[0]: row[1]}) -%}
    {%- endfor -%}
    {%- set staged = {} -%}
    {%- if is_incremental() -%}
        {%- for row in run_query("select source_file, any_value(source_file_version), min(event_row_id) // "
                                 ~ file_number_step() ~ " from " ~ this ~ " group by source_file") -%}
            {%- do staged.update({row[0]: {'version': row[1], 'number': row[2] | int}}) -%}
        {%- endfor -%}
    {%- endif -%}
    {%- set next = namespace(number=(staged.values() | map(attribute='number') | max + 1) if staged else 0) -%}
    {%- set plan = [] -%}
    {%- for path in files -%}
        {%- set known = staged.get(path) -%}
        {%- if known is none -%}
            {%- do plan.append({'path': path, 'version': versions[path], 'number': next.number, 'read': true}) -%}
            {%- set next.number = next.number + 1 -%}
        {%- else -%}
            {%- do plan.append({'path': path, 'version': versions[path], 'number': known.number,
                                'read': known.version != versions[path]}) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(plan) }}
{%- endmacro %}
{#- Spark rebuilds staging every time, from one file (the pipeline refuses several on Spark). -#}
{% macro spark__export_file_plan() -%}
    {%- set plan = [] -%}
    {%- for path in export_files() -%}
        {%- do plan.append({'path': path, 'version': '', 'number': loop.index0, 'read': true}) -%}
    {%- endfor -%}
    {{ return(plan) }}
{%- endmacro %}

{#- Lines per file that event_row_id leaves room for. -#}
{% macro file_number_step() -%}
    10000000000
{%- endmacro %}

{#- Before a staging build: drop the rows, and the reader's rejects, of every file that is no
    longer given or is read again (changed: a re-sent day replaces its rows). -#}
{% macro unstage_files(plan) -%}
    {{ return(adapter.dispatch('unstage_files', 'recsys')(plan)) }}
{%- endmacro %}
{#- Spark rebuilds staging and its (empty) rejects table every time. -#}
{% macro spark__unstage_files(plan) -%}
{%- endmacro %}
{% macro duckdb__unstage_files(plan) -%}
    {%- set kept = plan | rejectattr('read') | map(attribute='path') | list -%}
    create table if not exists {{ this.schema }}.ab_test_reader_rejects (
        source_file varchar, line_number bigint, error_type varchar, csv_line varchar, error_message varchar
    );
    delete from {{ this.schema }}.ab_test_reader_rejects
    {%- if kept %} where source_file not in ({{ sql_values(kept) }}){% endif %};
    {%- if is_incremental() %}
    delete from {{ this }}
    {%- if kept %} where source_file not in ({{ sql_values(kept) }}){% endif %};
    {%- endif %}
{%- endmacro %}

{#- The lines of the files the plan reads: event_row_id (the file's number * 10^10 + the line's
    position among the lines the reader took from it, 1 after the header), line (up to a unit
    separator; NULL for a blank line), overflow (after it), source_file and its version. -#}
{% macro export_lines(plan) -%}
    {{ return(adapter.dispatch('export_lines', 'recsys')(plan)) }}
{%- endmacro %}
{% macro duckdb__export_lines(plan) -%}
    {%- set read = plan | selectattr('read') | list -%}
    {%- for file in read %}
    {{ "union all" if not loop.first }}
    -- One branch per file, numbered in the order read (DuckDB opens only the file the filter names):
    -- no join or sort, so the rows keep the file's order.
    select
        {{ file.number | int }} * {{ file_number_step() }} + row_number() over () as event_row_id,
        line,
        overflow,
        source_file,
        {{ sql_values([file.version]) }} as source_file_version
    from {{ source('ab_test', 'events') }}
    where source_file = {{ sql_values([file.path]) }}
    {%- else %}
    select null::bigint as event_row_id, null::varchar as line, null::varchar as overflow,
        null::varchar as source_file, null::varchar as source_file_version
    where false
    {%- endfor %}
{%- endmacro %}
{#- Spark numbers lines in file order (monotonically_increasing_id follows the file within and
    across its splits); the first is the header. -#}
{% macro spark__export_lines(plan) -%}
    select
        line_number - 1 as event_row_id,
        nullif(substring_index(value, chr(31), 1), '') as line,
        case when instr(value, chr(31)) > 0 then substr(value, instr(value, chr(31)) + 1) end as overflow,
        {{ string_var('input_path') }} as source_file,
        '' as source_file_version
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
{#- A build that read no file (nothing new tonight) made no reject tables: nothing to save. -#}
{% macro duckdb__save_reader_rejects(schema) -%}
    {%- set scanned = execute and run_query(
        "select count(*) from duckdb_tables() where table_name = 'reject_errors'").columns[0].values()[0] > 0 -%}
    {%- if scanned %}
    insert into {{ schema }}.ab_test_reader_rejects
    select scans.file_path, errors.line, errors.error_type, errors.csv_line, errors.error_message
    from reject_errors as errors
    inner join reject_scans as scans using (scan_id, file_id)
    {%- else %}
    select 1
    {%- endif %}
{%- endmacro %}
{% macro spark__save_reader_rejects(schema) -%}
    create table if not exists {{ schema }}.ab_test_reader_rejects (
        source_file string, line_number bigint, error_type string, csv_line string, error_message string
    )
{%- endmacro %}
