-- Items the same users bought (or carted, or viewed) together, as of each cutoff, with
-- support (distinct users), confidence and lift, one row per ordered pair.
-- Bounded: each user contributes only their most recent distinct items per signal
-- (var max_pair_items_per_user, fewer for views), so a user with hundreds of items adds at most
-- M * (M - 1) pairs. Private: a pair is kept only when at least var min_pair_users users share it.
-- Computed on integer user and item keys (int_user_keys, int_item_keys: ties broken by key break
-- as by id), and the item ids joined back to the pairs kept: at 10 M rows the text ids made the
-- per-user ranking and the self-join 1.5x as slow. Counts only, so the row order the key joins
-- leave cannot change a result.
with events as (

    -- The line items on integer keys (int_user_keys, int_item_keys), before each cutoff.
    select
        cutoffs.cutoff_at,
        line_items.event_type,
        line_items.event_at,
        user_keys.user_key,
        item_keys.item_key
    from {{ ref('int_line_items') }} as line_items
    inner join {{ ref('int_user_keys') }} as user_keys on line_items.user_id = user_keys.user_id
    inner join {{ ref('int_item_keys') }} as item_keys on line_items.item_id = item_keys.item_id
    inner join {{ ref('int_cutoffs') }} as cutoffs on line_items.event_at < cutoffs.cutoff_at

),

user_items as (

    select
        cutoff_at,
        case event_type when 'purchase' then 'purchase' when 'add_to_cart' then 'cart' else 'view' end as signal,
        user_key,
        item_key,
        max(event_at) as last_at
    from events
    group by all

),

recent as (

    select * from user_items
    qualify
        row_number() over (partition by cutoff_at, signal, user_key order by last_at desc, item_key asc)
        <= case signal
            when 'view' then {{ int_var('max_pair_items_per_user_views') }}
            else {{ int_var('max_pair_items_per_user') }}
        end

),

signal_users as (

    select
        cutoff_at,
        signal,
        count(distinct user_key) as n_users
    from recent
    group by all

),

item_users as (

    select
        cutoff_at,
        signal,
        item_key,
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
        recent.user_key,
        recent.item_key
    from recent
    inner join item_users using (cutoff_at, signal, item_key)
    where item_users.n_users >= {{ int_var('min_pair_users') }}

),

pairs as (

    select
        a.cutoff_at,
        a.signal,
        a.item_key,
        b.item_key as other_item_key,
        count(*) as support_users
    from pair_items as a
    inner join pair_items as b
        on
            a.cutoff_at = b.cutoff_at and a.signal = b.signal and a.user_key = b.user_key
            and a.item_key <> b.item_key
    group by all
    having count(*) >= {{ int_var('min_pair_users') }}

)

select
    pairs.cutoff_at,
    pairs.signal,
    item_ids.item_id,
    other_ids.item_id as other_item_id,
    pairs.support_users,
    pairs.support_users / item.n_users::double as confidence,
    pairs.support_users * signal_users.n_users / (item.n_users * other.n_users)::double as lift
from pairs
inner join item_users as item
    on pairs.cutoff_at = item.cutoff_at and pairs.signal = item.signal and pairs.item_key = item.item_key
inner join item_users as other
    on pairs.cutoff_at = other.cutoff_at and pairs.signal = other.signal and pairs.other_item_key = other.item_key
inner join signal_users
    on pairs.cutoff_at = signal_users.cutoff_at and pairs.signal = signal_users.signal
inner join {{ ref('int_item_keys') }} as item_ids on pairs.item_key = item_ids.item_key
inner join {{ ref('int_item_keys') }} as other_ids on pairs.other_item_key = other_ids.item_key
