-- This run's small record for the monitors, kept in the home after each published run
-- (ml.monitoring.drift) so that the next run can compare with it: a deterministic sample of
-- the main features' values (measure 'feature:<name>'), the counts behind the shares
-- ('count:<name>'), the holdout NDCG, and the personal lists of a fixed set of users ('list',
-- the users with the smallest hashes of their ids, stored as that hash only).
with run as (

    select {{ build_version() }} as run_id

),

users as (

    select
        user_id,
        md5(user_id) as user_key,
        n_events::double as n_events,
        n_purchases::double as n_purchases,
        price_median_rub
    from {{ ref('user_features') }}
    where cutoff_at = {{ serving_cutoff() }}

),

items as (

    select
        item_id,
        md5(item_id) as item_key,
        popularity,
        price_rub,
        trend
    from {{ ref('item_features') }}
    where cutoff_at = {{ serving_cutoff() }}

),

personal as (

    select
        user_id,
        item_id,
        score,
        md5(user_id) as user_key
    from {{ ref('pub_recommendations') }}

),

user_sample as (

    select * from users
    qualify row_number() over (order by user_key) <= {{ int_var('monitor_sample_rows') }}

),

item_sample as (

    select * from items
    qualify row_number() over (order by item_key) <= {{ int_var('monitor_sample_rows') }}

),

score_sample as (

    select score from personal
    qualify row_number() over (order by user_key, item_id) <= {{ int_var('monitor_sample_rows') }}

),

listed_users as (

    select distinct user_key from personal
    order by user_key
    limit {{ int_var('monitor_list_users') }}

),

cold_users as (

    -- Users with history but no personal list: the marketplace shows them the fallback list.
    select users.user_id from users
    where users.user_id not in (select personal.user_id from personal)

),

published_items as (

    select item_id from personal
    union
    select item_id from {{ ref('pub_fallback_recommendations') }}

),

feature_values as (

    select
        unnest(['user_n_events', 'user_n_purchases', 'user_price_median_rub']) as feature,
        unnest([n_events, n_purchases, price_median_rub]) as value
    from user_sample
    union all
    select
        unnest(['item_popularity', 'item_price_rub', 'item_trend']) as feature,
        unnest([popularity, price_rub, trend]) as value
    from item_sample
    union all
    select
        'score' as feature,
        score as value
    from score_sample

),

counts as (

    select
        unnest(['users', 'cold_users', 'items_with_events', 'published_items']) as count_name,
        unnest([
            (select count(*) from users),
            (select count(*) from cold_users),
            (select count(*) from items),
            (select count(*) from published_items)
        ]) as value

),

measures as (

    select
        'feature:' || feature as measure,
        value,
        null as user_key,
        null as item_id
    from feature_values
    union all
    select
        'count:' || count_name as measure,
        value,
        null as user_key,
        null as item_id
    from counts
    union all
    select
        'ndcg' as measure,
        {{ run_ndcg() }} as value,
        null as user_key,
        null as item_id
    union all
    select
        'list' as measure,
        null as value,
        personal.user_key,
        personal.item_id
    from personal
    inner join listed_users on personal.user_key = listed_users.user_key

)

select
    run.run_id,
    measures.measure,
    measures.value::double as value,
    measures.user_key::varchar as user_key,
    measures.item_id::varchar as item_id
from measures
cross join run
