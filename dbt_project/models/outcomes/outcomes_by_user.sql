-- One row per exposed user (int_exposed_users' grain): what they did within var outcome_days of
-- their first exposure. An event follows the list when it is on an item the user was shown, after
-- it was first shown to them; only events after the first exposure and before the serving cutoff
-- count. A window that runs past the cutoff is not complete (window_complete = false): the export
-- cannot say yet what the user did in it, so the shares (outcomes_by_list, the readout) leave it out.
with exposed as (

    select
        *,
        first_exposed_at + to_days({{ int_var('outcome_days') }}) as window_end_at
    from {{ ref('int_exposed_users') }}

),

bounds as (

    select serve_at from {{ ref('int_export_window') }}

),

shown_structs as (

    select
        model_version,
        list_kind,
        user_id,
        unnest(items_shown) as shown
    from exposed

),

items_shown as (

    select
        model_version,
        list_kind,
        user_id,
        struct_extract(shown, 'item_id') as item_id,
        struct_extract(shown, 'first_shown_at') as first_shown_at
    from shown_structs

),

window_lines as (

    -- the one-row bounds cross-joined: joined on event_at < serve_at, it would be planned as a range join
    select
        exposed.model_version,
        exposed.list_kind,
        exposed.user_id,
        line_items.item_id,
        line_items.event_type,
        line_items.event_at,
        line_items.price_rub * line_items.quantity as revenue_rub
    from exposed
    inner join {{ ref('int_line_items') }} as line_items
        on exposed.user_id = line_items.user_id
    cross join bounds
    where
        line_items.event_at > exposed.first_exposed_at
        and line_items.event_at < exposed.window_end_at
        and line_items.event_at < bounds.serve_at

),

followed as (

    select
        window_lines.*,
        items_shown.item_id is not null as on_shown_item
    from window_lines
    left join items_shown
        on
            window_lines.model_version = items_shown.model_version
            and window_lines.list_kind = items_shown.list_kind
            and window_lines.user_id = items_shown.user_id
            and window_lines.item_id = items_shown.item_id
            and window_lines.event_at > items_shown.first_shown_at

),

per_user as (

    select
        model_version,
        list_kind,
        user_id,
        bool_or(on_shown_item and event_type = 'view_item') as viewed_shown,
        bool_or(on_shown_item and event_type = 'add_to_cart') as carted_shown,
        bool_or(on_shown_item and event_type = 'purchase') as bought_shown,
        bool_or(event_type = 'purchase') as bought_any,
        sum(revenue_rub) filter (where on_shown_item and event_type = 'purchase') as shown_revenue_rub,
        sum(revenue_rub) filter (where event_type = 'purchase') as revenue_rub
    from followed
    group by model_version, list_kind, user_id

)

select
    exposed.model_version,
    exposed.list_kind,
    exposed.user_id,
    exposed.experiment_group,
    exposed.first_exposed_at,
    exposed.window_end_at,
    exposed.window_end_at <= bounds.serve_at as window_complete,
    exposed.n_items_shown,
    coalesce(per_user.viewed_shown, false) as viewed_shown,
    coalesce(per_user.carted_shown, false) as carted_shown,
    coalesce(per_user.bought_shown, false) as bought_shown,
    coalesce(per_user.bought_any, false) as bought_any,
    coalesce(per_user.shown_revenue_rub, 0) as shown_revenue_rub,
    coalesce(per_user.revenue_rub, 0) as revenue_rub,
    {{ int_var('outcome_days') }} as outcome_days
from exposed
cross join bounds
left join per_user
    on
        exposed.model_version = per_user.model_version
        and exposed.list_kind = per_user.list_kind
        and exposed.user_id = per_user.user_id
