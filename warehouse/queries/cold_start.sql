-- cold_start.sql: the popular-now list of a platform, for visitors nobody knows yet.
--
-- Answers: the top $n of the published popular list of $platform, read straight from
-- fallback_recommendations (no user involved: the same list for everyone on that platform).
-- A null platform, or one without a list, gets the 'all' list; the platform column says
-- which list answered.
--
-- Parameters:
--     $platform  varchar  one of dbt var platforms or 'all' (null or anything else: 'all')
--     $n         integer  list length (the published lists hold --top-n items, dbt var top_n by default)
--
-- From Python (file opened read-only):
--     con = duckdb.connect("warehouse/home/serving/recommendations.duckdb", read_only=True)
--     sql = pathlib.Path("warehouse/queries/cold_start.sql").read_text()
--     con.execute(sql, {"platform": "iOS", "n": 20}).fetchall()
--
-- From the DuckDB CLI (a prepared statement, named parameters):
--     duckdb -readonly warehouse/home/serving/recommendations.duckdb -c "prepare q as
--         $(cat warehouse/queries/cold_start.sql) execute q(platform := 'iOS', n := 20)"
--
-- Returns, ordered by rank (1..n):
--     platform, item_id, rank, score, reason ('popular:<platform>'), model_version, generated_at
with listed as (
    select coalesce(max(platform), 'all') as platform
    from fallback_recommendations
    where platform = $platform
)

select
    f.platform,
    f.item_id,
    f.rank,
    f.score,
    f.reason,
    f.model_version,
    f.generated_at
from fallback_recommendations as f
where
    f.platform = (select l.platform from listed as l)
    and f.rank <= $n
order by f.rank;
