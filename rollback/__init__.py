"""rollback-pipelines: the shared kernel (models, config, errors, adapters, CLI)."""

__version__ = "0.1.0"
