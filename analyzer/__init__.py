"""logscan's analyzer: read RL fine-tuning logs, rebuild metrics, detect pathologies, report."""

# The one place the version lives: pyproject.toml reads it (setuptools' `attr:`, statically),
# `logscan --version` and analysis.json's `logscan_version` print it. Bump it with a CHANGELOG entry.
__version__ = "0.1.0"
# The name users install (`pip install logscan-rl`); "logscan" on PyPI is an unrelated project.
DISTRIBUTION = "logscan-rl"
