-- One row per (publication, list kind, user shown a list of that kind): when they were first
-- shown one, and every item they were shown with the first time it was. Anonymous product pages
-- (no user) have no later events to join and are left out. experiment_group compares the home
-- lists as assigned (intention to treat): `control` is the control group (the cold-start list in
-- place of their own, ml/serving/experiment.py), `treatment` everyone else asking for their list,
-- with a personal list or without one (`fallback`), as control holds both kinds of user too.
with shown as (

    select
        model_version,
        list_kind,
        user_id,
        item_id,
        min(served_at) as first_shown_at
    from {{ ref('stg_exposures') }}
    where user_id is not null
    group by model_version, list_kind, user_id, item_id

)

select
    model_version,
    list_kind,
    user_id,
    case
        when list_kind = 'control' then 'control'
        when list_kind in ('personal', 'fallback') then 'treatment'
    end as experiment_group,
    min(first_shown_at) as first_exposed_at,
    count(*) as n_items_shown,
    list(struct_pack(item_id := item_id, first_shown_at := first_shown_at) order by first_shown_at, item_id)
        as items_shown
from shown
group by model_version, list_kind, user_id
