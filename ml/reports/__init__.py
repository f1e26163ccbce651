"""Self-contained HTML reports: one file each, no network, plots embedded as PNG.

* :func:`render_evaluation_report` draws an evaluation dict (``evaluation.json``: the lists'
  metrics with bootstrap intervals, the gate, pilot targets, the classifier, candidate recall,
  the parameter search, importance, cold buyers). Only ``metrics`` is required.
* :func:`render_profile_report` draws an export's profile (``ml.warehouse.profile``).
* :func:`render_monitor_page` draws the runs' series, warnings and last readout
  (``ml.monitoring.page`` gathers them).

Pages are Jinja2 templates (``templates/``, package data); ``kit`` holds formatting and the
template environment, ``plots`` the matplotlib helpers.
"""

from ml.reports.evaluation import render_evaluation_report
from ml.reports.monitor import render_monitor_page
from ml.reports.profile import render_profile_report

__all__ = ["render_evaluation_report", "render_monitor_page", "render_profile_report"]
