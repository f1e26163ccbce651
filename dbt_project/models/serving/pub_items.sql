-- Item attributes the serving queries need for new-item answers: category, price, popularity.
select
    items.item_id,
    items.category_id,
    items.price_rub,
    items.popularity,
    {{ build_version() }} as model_version
from {{ ref('item_features') }} as items
where items.cutoff_at = {{ serving_cutoff() }}
