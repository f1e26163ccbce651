-- The candidate users' own items with their rank by recent interest and by purchases: the
-- history and repurchase sources, and the user-item features of every candidate.
with user_items as (

    select
        user_items.*,
        row_number() over (
            partition by user_items.cutoff_at, user_items.user_id
            order by user_items.interest desc, user_items.item_id asc
        ) as interest_rank,
        -- 1 = the item the user bought on most days: what a plain "buy again" list ranks by.
        case when user_items.n_purchases > 0 then row_number() over (
            partition by user_items.cutoff_at, user_items.user_id
            order by
                user_items.n_purchases > 0 desc, user_items.n_purchase_days desc,
                user_items.n_purchases desc, user_items.last_purchase_at desc, user_items.item_id asc
        ) end as purchase_rank
    from {{ ref('int_user_items') }} as user_items
    inner join {{ ref('candidate_users') }} using (cutoff_at, user_id)

)

select * from user_items
