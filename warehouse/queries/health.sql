-- health.sql: one row saying what is published, since when, how much, and whether it is fresh.
--
-- Answers: the file's publication row (model version, what made the personal lists, when the
-- lists were generated, the data cutoff they were trained on, users and rows at publication)
-- beside the row counts really in the file now, and whether the lists are fresh: generated at
-- most $max_age_hours ago (generated_at is UTC; 26 suits the nightly 03:00 schedule plus slack).
-- list_source: 'ranker', 'baseline:<name>' (a simple list won the gate) or 'cold_start' (no
-- personal lists: everyone gets the popular lists).
--
-- Parameters:
--     $max_age_hours  double  the age above which the lists count as stale
--
-- From Python (file opened read-only):
--     con = duckdb.connect("warehouse/home/serving/recommendations.duckdb", read_only=True)
--     sql = pathlib.Path("warehouse/queries/health.sql").read_text()
--     con.execute(sql, {"max_age_hours": 26}).fetchone()
--
-- From the DuckDB CLI (a prepared statement, named parameters):
--     duckdb -readonly warehouse/home/serving/recommendations.duckdb -c "prepare q as
--         $(cat warehouse/queries/health.sql) execute q(max_age_hours := 26)"
--
-- Returns one row:
--     model_version, list_source, generated_at, as_of, age_hours, is_fresh, n_users, n_rows,
--     pseudonymized, recommendations_rows, fallback_rows, fallback_platforms, similar_items_rows,
--     items_rows, user_profiles_rows, category_top_items_rows,
--     is_consistent (n_rows = recommendations_rows, and a popular list for every platform and 'all')
with counts as (
    select
        (select count(*) from recommendations) as recommendations_rows,
        (select count(*) from fallback_recommendations) as fallback_rows,
        (select count(distinct platform) from fallback_recommendations) as fallback_platforms,
        (select count(*) from similar_items) as similar_items_rows,
        (select count(*) from items) as items_rows,
        (select count(*) from user_profiles) as user_profiles_rows,
        (select count(*) from category_top_items) as category_top_items_rows
),

aged as (
    select
        *,
        date_diff('second', generated_at, timezone('utc', now())) / 3600.0 as age_hours
    from publication
),

judged as (
    select
        *,
        age_hours <= $max_age_hours as is_fresh
    from aged
)

select
    a.model_version,
    a.list_source,
    a.generated_at,
    a.as_of,
    a.age_hours,
    a.is_fresh,
    a.n_users,
    a.n_rows,
    a.pseudonymized,
    c.recommendations_rows,
    c.fallback_rows,
    c.fallback_platforms,
    c.similar_items_rows,
    c.items_rows,
    c.user_profiles_rows,
    c.category_top_items_rows,
    a.n_rows = c.recommendations_rows and c.fallback_platforms = 4 as is_consistent
from judged as a
cross join counts as c;
