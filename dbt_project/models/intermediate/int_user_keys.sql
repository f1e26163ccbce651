-- An integer per user id of int_line_items, numbered like int_item_keys.
select
    user_id,
    row_number() over (order by user_id) as user_key
from (select distinct user_id from {{ ref('int_line_items') }}) as users
