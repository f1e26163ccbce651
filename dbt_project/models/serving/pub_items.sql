-- Item attributes the serving queries need for new-item answers: category, price, popularity.
select
    items.item_id,
    items.category_id,
    items.price_rub,
    items.popularity
from {{ ref('item_features') }} as items
join {{ ref('int_cutoffs') }} as cutoffs using (cutoff_at)
where cutoffs.cutoff_index = 0
