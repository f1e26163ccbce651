-- Privacy: no co-occurrence pair shared by fewer than var min_pair_users distinct users.
select * from {{ ref('co_purchase') }}
where support_users < {{ int_var('min_pair_users') }}
