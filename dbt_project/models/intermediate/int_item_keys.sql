-- An integer per item id of int_line_items, numbered in the ids' sort order (1 = the smallest), so
-- that a tie broken by key breaks as it would by id. co_purchase ranks and self-joins on these
-- keys instead of 39-character text; the same within one build only.
select
    item_id,
    row_number() over (order by item_id) as item_key
from (select distinct item_id from {{ ref('int_line_items') }}) as items
