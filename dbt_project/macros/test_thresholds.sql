{#- A monitor's threshold, named by the dbt var that holds it (checked to be a number): the
    rows whose value is beyond it fail; NULLs (nothing to compare yet) pass. -#}
{% test at_most(model, column_name, limit_var) %}
select *
from {{ model }}
where {{ column_name }} > {{ number_var(limit_var) }}
{% endtest %}

{% test at_least(model, column_name, limit_var) %}
select *
from {{ model }}
where {{ column_name }} < {{ number_var(limit_var) }}
{% endtest %}
