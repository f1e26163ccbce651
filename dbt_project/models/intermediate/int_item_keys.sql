-- The item id of each item_key of int_line_items: the marts that work on keys name their rows by it.
select
    item_key,
    min(item_id) as item_id
from {{ ref('int_line_items') }}
group by item_key
