-- One typed row per item the API showed (source exposures.exposure_log). Empty, with the same
-- columns, while the home's exposure log holds no file: a build before any serving is unaffected.
{% if exposures_logged() %}
    select
        cast(served_at as timestamp) as served_at,
        request_id,
        list_kind,
        user_id,
        anchor_item_id,
        item_id,
        cast(rank as integer) as rank,
        source,
        model_version
    from {{ source('exposures', 'exposure_log') }}
{% else %}
    select
        null::timestamp as served_at,
        null::varchar as request_id,
        null::varchar as list_kind,
        null::varchar as user_id,
        null::varchar as anchor_item_id,
        null::varchar as item_id,
        null::integer as rank,
        null::varchar as source,
        null::varchar as model_version
    where false
{% endif %}
