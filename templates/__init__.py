"""Jinja2 templates and assets of logscan's reports (report.md.j2, report.html.j2, report.css,
report.js). Shipped inside the wheel and read through importlib.resources by ``analyzer.render``.
"""
