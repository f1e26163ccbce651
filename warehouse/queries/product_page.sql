-- product_page.sql: "bought together" for the item on a product page, optionally personalised.
--
-- Answers: the items bought together with $item_id (source 'bought_together'); for an item
-- without such pairs (a new item) the popular items of its category near its price
-- ('same_category'); for an item without a category or an unknown item, the popular list
-- ('fallback:<platform>'). Never $item_id itself. With a known $user_id the list is
-- re-ordered for them (in their list x1.5, their top category x1.25, far above their price
-- band penalised; personalised = true); $user_id null or unknown keeps the stored order.
-- The logic is the macro related_items() stored in the file.
--
-- Parameters:
--     $item_id  varchar  the item whose page is shown
--     $n        integer  list length, 1..1000
--     $user_id  varchar  the viewer, or null for an anonymous page (pseudonymous ids: pseudonym(id, key))
--
-- From Python (file opened read-only):
--     con = duckdb.connect("warehouse/home/serving/recommendations.duckdb", read_only=True)
--     sql = pathlib.Path("warehouse/queries/product_page.sql").read_text()
--     con.execute(sql, {"item_id": "1001", "n": 20, "user_id": "102"}).fetchall()
--
-- From the DuckDB CLI (a prepared statement, named parameters):
--     duckdb -readonly warehouse/home/serving/recommendations.duckdb -c "prepare q as
--         $(cat warehouse/queries/product_page.sql) execute q(item_id := '1001', n := 20, user_id := '102')"
--
-- Returns, ordered by rank (1..n):
--     for_item_id, item_id, rank, score, final_score, source, src_rank, personalised
--     (final_score: the order; score: the source's own score; src_rank: the rank in the source)
select
    for_item_id,
    item_id,
    rank,
    score,
    final_score,
    source,
    src_rank,
    personalised
from related_items($item_id, $n, uid := $user_id)
order by rank;
