"""Everything logscan shows: the one package that presents an analysis, and decides nothing.

- ``data``: the analysis as plain data (``analysis.json``) and the per-metric summary.
- ``render``: the Jinja environment and the view model of report.md / report.html.
- ``plots``: the matplotlib figures.
- ``junit``: report.junit.xml.
- ``terminal``: the terminal summary of ``analyze`` / ``html-report``.
- ``compare_view``, ``watch_view``, ``samples_view``: what ``compare``, ``watch`` and ``samples`` print.
- ``escape``: escaping of untrusted text for Markdown, HTML, JSON-in-HTML and the terminal.
- ``numbers``: the one number formatter.

Verdicts, fail-on thresholds and the alert order come from ``analyzer.verdict``; the report only
shows them. Modules here are imported by the commands and the pipeline, never the other way round.
"""
