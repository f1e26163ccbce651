-- What each user bought in the label window after each labelled cutoff: the ranker's labels and
-- the evaluation's truth, defined once.
select distinct
    cutoffs.cutoff_at,
    line_items.user_id,
    line_items.item_id
from {{ ref('int_line_items') }} as line_items
inner join {{ ref('int_cutoffs') }} as cutoffs
    on line_items.event_at >= cutoffs.cutoff_at and line_items.event_at < cutoffs.label_end_at
where line_items.event_type = 'purchase'
