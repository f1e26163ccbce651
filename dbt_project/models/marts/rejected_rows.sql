-- The quarantine: every exported row that could not be used, with why and the row as written.
-- Rows keep their fields as written; a line that could not be split into fields, or that the
-- reader could not take at all, keeps the raw line.
select
    event_row_id,
    null::bigint as line_number,
    reject_reason,
    raw_platform,
    raw_event_time,
    raw_event_date,
    raw_user_id,
    raw_event_type,
    raw_price100,
    raw_qty,
    raw_item_ids,
    raw_main_category,
    raw_sub_category,
    nullif(array_to_string(extra_fields, ','), '') as raw_extra_fields,
    raw_line
from {{ ref('int_events__validated') }}
where reject_reason is not null

union all

-- A union's later branches take the first branch's column names: no aliases here.
-- noqa: disable=AL03
select
    null,
    line_number,
    'malformed_row',
    null,
    null,
    null,
    null,
    null,
    null,
    null,
    null,
    null,
    null,
    null,
    raw_line
from {{ ref('stg_ab_test__unreadable_lines') }}
-- noqa: enable=AL03
