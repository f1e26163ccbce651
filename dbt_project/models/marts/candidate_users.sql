-- The users candidates are built for, per cutoff: at the serving cutoff every user with history;
-- at labelled cutoffs only users who purchase in the label window (the only users a ranking can
-- be learned or judged on).
with cutoffs as (

    select * from {{ ref('int_cutoffs') }}

),

buyers as (

    select distinct
        cutoff_at,
        user_id
    from {{ ref('int_window_purchases') }}

),

users as (

    select user_features.*
    from {{ ref('user_features') }} as user_features
    inner join cutoffs using (cutoff_at)
    left join buyers using (cutoff_at, user_id)
    where
        user_features.n_items > 0
        and (cutoffs.label_end_at is null or buyers.user_id is not null)

)

select * from users
