-- Accepted events per user and day, all event types: non-commerce rows (user_engagement,
-- pageview) carry no items and no time, but they are real activity.
select
    user_id,
    -- One platform per user and day; min, not any_value: a rebuild gives the same answer.
    min(platform) as platform,
    event_date,
    count(*) as n_events,
    count(*) filter (where is_commerce) as n_commerce_events,
    count(*) filter (where event_type = 'user_engagement') as n_engagement_events,
    count(*) filter (where event_type = 'pageview') as n_pageview_events
from {{ ref('int_events__validated') }}
where reject_reason is null
group by user_id, event_date
