"""Jinja2 templates and assets of logscan's reports (report.md.j2, report.html.j2, report.css,
report.js). Installed inside the analyzer as the package ``analyzer.templates`` (pyproject.toml's
``package-dir``; the repository keeps the folder at the top) and read through importlib.resources by
``analyzer.report.render``.
"""
