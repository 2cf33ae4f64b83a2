"""The command line: `rollback ...` (entry point ``deployments.cli.main:main``)."""
