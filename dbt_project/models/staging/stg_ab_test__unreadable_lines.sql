-- Lines of the export that DuckDB's CSV reader could not split at all (e.g. more fields than the
-- header beyond the sniffed sample). The reader keeps them aside (store_rejects) instead of
-- failing the load; stg_ab_test__events' post-hook saves them; here they get names and types.
-- depends_on: {{ ref('stg_ab_test__events') }}
select
    line_number::bigint                        as line_number,
    error_type,
    error_message,
    csv_line                                   as raw_line
from {{ this.schema }}.ab_test_reader_rejects
