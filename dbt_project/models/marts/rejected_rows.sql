-- The quarantine: every exported row that could not be used, with why and the row as written.
-- Rows keep their fields as written (from staging: the verdicts carry only typed fields); a line
-- that could not be split into fields, or that the reader could not take at all, keeps the raw line.
select
    validated.event_row_id,
    null::bigint as line_number,
    staged.source_file,
    validated.reject_reason,
    staged.raw_platform,
    staged.raw_event_time,
    staged.raw_event_date,
    staged.raw_user_id,
    staged.raw_event_type,
    staged.raw_price100,
    staged.raw_qty,
    staged.raw_item_ids,
    staged.raw_main_category,
    staged.raw_sub_category,
    nullif({{ list_join('staged.extra_fields', "','") }}, '') as raw_extra_fields,
    staged.raw_line
from {{ ref('int_events__validated') }} as validated
inner join {{ ref('stg_ab_test__events') }} as staged on validated.event_row_id = staged.event_row_id
where validated.reject_reason is not null

union all

-- A union's later branches take the first branch's column names: no aliases here.
-- noqa: disable=AL03
select
    null,
    line_number,
    source_file,
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
