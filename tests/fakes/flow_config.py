"""A one-service rollback config written to a YAML file, for tests that run the flow."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import yaml


def write_config(
    path: Path, service: str, settings: dict[str, Any], environment: str = "staging"
) -> Path:
    """Write a config with one unprotected environment holding one service.

    Table names are unique per call: the runtime remembers per process which tables it
    created, and the moto server is reset between tests.
    """
    suffix = uuid.uuid4().hex[:8]
    data = {
        "stores": {
            "audit_table": f"audit-{suffix}",
            "history_table": f"history-{suffix}",
            "create_tables": True,
        },
        "environments": {
            environment: {
                "protected": False,
                "services": {service: {"poll_interval_s": 0.05, **settings}},
            }
        },
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
