"""logscan's analyzer: read RL fine-tuning logs, rebuild metrics, detect pathologies, report."""

__version__ = "0.1.0"
