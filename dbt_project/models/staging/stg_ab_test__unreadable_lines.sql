-- Lines of the export that DuckDB's reader could not take at all (longer than its 2 MB line
-- limit, or not UTF-8 text). The reader keeps them aside (store_rejects) instead of failing the
-- load; stg_ab_test__events' post-hook saves them; here they get names and types.
-- depends_on: {{ ref('stg_ab_test__events') }}
select
    source_file,
    line_number::bigint as line_number,
    error_type,
    error_message,
    csv_line as raw_line
from {{ this.schema }}.ab_test_reader_rejects
