-- What the serving queries may know of a user: platform, price tier and top category. Aggregates
-- only; no event leaves the warehouse.
select
    users.user_id,
    users.platform,
    users.price_median_rub,
    users.price_spread,
    users.top_category_id
from {{ ref('user_features') }} as users
join {{ ref('int_cutoffs') }} as cutoffs using (cutoff_at)
where cutoffs.cutoff_index = 0
