-- Items the same users bought (or carted, or viewed) together, as of each cutoff, with
-- support (distinct users), confidence and lift, one row per ordered pair.
-- Bounded: each user contributes only their most recent distinct items per signal
-- (var max_pair_items_per_user, fewer for views), so a user with hundreds of items adds at most
-- M * (M - 1) pairs. Private: a pair is kept only when at least var min_pair_users users share it.
with events as {{ not_materialized() }} (

    {{ events_before_cutoffs() }}

),

user_items as (

    select
        cutoff_at,
        case event_type when 'purchase' then 'purchase' when 'add_to_cart' then 'cart' else 'view' end as signal,
        user_id,
        item_id,
        max(event_at) as last_at
    from events
    group by all

),

recent as (

    select * from user_items
    qualify
        row_number() over (partition by cutoff_at, signal, user_id order by last_at desc, item_id asc)
        <= case signal
            when 'view' then {{ int_var('max_pair_items_per_user_views') }}
            else {{ int_var('max_pair_items_per_user') }}
        end

),

signal_users as (

    select
        cutoff_at,
        signal,
        count(distinct user_id) as n_users
    from recent
    group by all

),

item_users as (

    select
        cutoff_at,
        signal,
        item_id,
        count(*) as n_users
    from recent
    group by all

),

pair_items as (

    -- A pair k users share needs each of its items among k users' recent items: dropping the
    -- long tail of items with fewer users first keeps the self-join small (same pairs kept).
    select
        recent.cutoff_at,
        recent.signal,
        recent.user_id,
        recent.item_id
    from recent
    inner join item_users using (cutoff_at, signal, item_id)
    where item_users.n_users >= {{ int_var('min_pair_users') }}

),

pairs as (

    select
        a.cutoff_at,
        a.signal,
        a.item_id,
        b.item_id as other_item_id,
        count(*) as support_users
    from pair_items as a
    inner join pair_items as b
        on
            a.cutoff_at = b.cutoff_at and a.signal = b.signal and a.user_id = b.user_id
            and a.item_id <> b.item_id
    group by all
    having count(*) >= {{ int_var('min_pair_users') }}

)

select
    pairs.cutoff_at,
    pairs.signal,
    pairs.item_id,
    pairs.other_item_id,
    pairs.support_users,
    pairs.support_users / item.n_users::double as confidence,
    pairs.support_users * signal_users.n_users / (item.n_users * other.n_users)::double as lift
from pairs
inner join item_users as item
    on pairs.cutoff_at = item.cutoff_at and pairs.signal = item.signal and pairs.item_id = item.item_id
inner join item_users as other
    on pairs.cutoff_at = other.cutoff_at and pairs.signal = other.signal and pairs.other_item_id = other.item_id
inner join signal_users
    on pairs.cutoff_at = signal_users.cutoff_at and pairs.signal = signal_users.signal
