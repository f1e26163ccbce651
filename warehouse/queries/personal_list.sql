-- personal_list.sql: the "you may like" list of one user, never empty.
--
-- Answers: the user's own list (source 'personal'), topped up from the popular list when it is
-- shorter than $n. A user without a list (new, unknown, or a run that published no personal
-- lists) gets the popular list of $platform, else of the platform in their profile, else 'all'
-- (source 'fallback:<platform>'). The logic is the macro recommend() stored in the file.
--
-- Parameters:
--     $user_id   varchar  the marketplace's user id (with pseudonymous ids: pseudonym(id, key) first)
--     $n         integer  list length, 1..1000 (the published lists hold --top-n items, dbt var top_n by default)
--     $platform  varchar  one of dbt var platforms, 'all', or null (null: the user's profile platform)
--
-- From Python (file opened read-only):
--     con = duckdb.connect("warehouse/home/serving/recommendations.duckdb", read_only=True)
--     sql = pathlib.Path("warehouse/queries/personal_list.sql").read_text()
--     con.execute(sql, {"user_id": "101", "n": 20, "platform": None}).fetchall()
--
-- From the DuckDB CLI (a prepared statement, named parameters):
--     duckdb -readonly warehouse/home/serving/recommendations.duckdb -c "prepare q as
--         $(cat warehouse/queries/personal_list.sql) execute q(user_id := '101', n := 20, platform := null)"
--
-- Returns, ordered by rank (1..n):
--     user_id, item_id, rank, score, reason, source, model_version, generated_at
select
    user_id,
    item_id,
    rank,
    score,
    reason,
    source,
    model_version,
    generated_at
from recommend($user_id, $n, plat := $platform)
order by rank;
