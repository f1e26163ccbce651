-- What the serving queries may know of a user: platform, price tier and top category. Aggregates
-- only; no event leaves the warehouse.
select
    users.user_id,
    users.platform,
    users.price_median_rub,
    users.price_spread,
    users.top_category_id,
    {{ build_version() }}                      as model_version
from {{ ref('user_features') }} as users
where users.cutoff_at = {{ serving_cutoff() }}
