{#- How much one event says about interest in an item; shared by popularity and trend. -#}
{% macro event_weight(event_type) -%}
    case {{ event_type }} when 'purchase' then 10.0 when 'add_to_cart' then 4.0 else 1.0 end
{%- endmacro %}

{#- How committed an event is (1 = purchase, the most): the price tier comes from the lowest. -#}
{% macro commitment_rank(event_type) -%}
    case {{ event_type }} when 'purchase' then 1 when 'add_to_cart' then 2 else 3 end
{%- endmacro %}

{#- Exponential time decay: an event half_life days before the cutoff counts half. -#}
{% macro decay(event_at, cutoff_at) -%}
    {%- set half_life = number_var('popularity_half_life_days') if var('popularity_half_life_days')
                        else int_var('horizon_days') -%}
    pow(0.5, {{ days_between(event_at, cutoff_at) }} / {{ half_life }})
{%- endmacro %}

{#- Line items strictly before each cutoff: the only way feature models read events. -#}
{% macro events_before_cutoffs() -%}
    select cutoffs.cutoff_at, line_items.*
    from {{ ref('int_line_items') }} as line_items
    join {{ ref('int_cutoffs') }} as cutoffs on line_items.event_at < cutoffs.cutoff_at
{%- endmacro %}

{#- The serving cutoff T (cutoff_index 0): what every published table is as of. -#}
{% macro serving_cutoff() -%}
    (select cutoff_at from {{ ref('int_cutoffs') }} where cutoff_index = 0)
{%- endmacro %}

{#- The version of the run whose build the features at hand come from: stamped on ingest
    (int_export_window), carried by int_cutoffs, which every feature build rebuilds first. Every
    published table carries it, so publish can refuse tables another run rebuilt meanwhile. -#}
{% macro build_version() -%}
    (select model_version from {{ ref('int_cutoffs') }} where cutoff_index = 0)
{%- endmacro %}

{#- The columns that stamp a published list with the build and time that made it. -#}
{% macro publication_stamp() -%}
    {{ build_version() }}                      as model_version,
    {{ timestamp_var('generated_at') }}        as generated_at
{%- endmacro %}
