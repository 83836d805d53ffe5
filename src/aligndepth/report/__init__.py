"""Reports: summaries, plots, markdown and self-contained HTML, all from run records."""

from aligndepth.report.render import render_report, summarize_run

__all__ = ["render_report", "summarize_run"]
