{#- Run settings reach SQL only through these macros, typed and checked: a value that is not
    what its name says stops the build with the reason instead of being pasted into SQL. -#}

{% macro _checked_var(name, pattern, what) -%}
    {%- set text = var(name) | string | trim -%}
    {%- if not modules.re.fullmatch(pattern, text) -%}
        {{ exceptions.raise_compiler_error("var " ~ name ~ " must be " ~ what ~ ", got " ~ (text[:40] | tojson)) }}
    {%- endif -%}
    {{ text }}
{%- endmacro %}

{#- A whole number, e.g. horizon_days, top_n. -#}
{% macro int_var(name) -%}
    {{ _checked_var(name, '-?[0-9]+', 'a whole number') }}
{%- endmacro %}

{#- A decimal number. -#}
{% macro number_var(name) -%}
    {{ _checked_var(name, '-?[0-9]+(\.[0-9]+)?', 'a number') }}
{%- endmacro %}

{#- A timestamp literal from YYYY-MM-DD[ HH:MM[:SS[.ffffff]]] (UTC). -#}
{% macro timestamp_var(name) -%}
    timestamp '{{ _checked_var(name, '[0-9]{4}-[0-9]{2}-[0-9]{2}( [0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?',
                               'a time like 2023-08-10 06:00:00') }}'
{%- endmacro %}

{#- Any text as a string literal: quotes doubled, so the value can never end the literal. -#}
{% macro string_var(name) -%}
    '{{ var(name) | string | replace("'", "''") }}'
{%- endmacro %}

{#- Any text as a backquoted name, e.g. a path in Spark's text.`path`: backquotes doubled, so the
    value can never end the name. -#}
{% macro backquoted_var(name) -%}
    `{{ var(name) | string | replace("`", "``") }}`
{%- endmacro %}
