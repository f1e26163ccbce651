-- What the serving queries may know of a user: platform, price tier and top category. Aggregates
-- only; no event leaves the warehouse. The price is a band, not the median (docs/privacy.md):
-- for a user with one priced purchase the median is that item's price.
select
    users.user_id,
    users.platform,
    floor(log2(users.price_median_rub))::integer as price_tier,
    users.top_category_id,
    {{ build_version() }} as model_version
from {{ ref('user_features') }} as users
where users.cutoff_at = {{ serving_cutoff() }}
