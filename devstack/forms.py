"""The Custom Run form of ``rollback-manual``, built from the config at deploy time.

``prefect deploy`` derives a deployment's form from its entry point's signature
(``flows/manual.py``), where environment and service can only be strings.
``pick_lists`` turns them into pick-lists of the configured names and makes reason and
requested_by non-empty; ``devstack.stack.publish_manual_form`` stores the result on the
deployment (the server then refuses any other value: enforce_parameter_schema). Pure.
"""

from __future__ import annotations

import copy
from typing import Any

from rollback.config import Config
from rollback.errors import ConfigError

MANUAL_DEPLOYMENT = "rollback/rollback-manual"


def pick_lists(schema: dict[str, Any], config: Config) -> dict[str, Any]:
    """``schema`` (the form as ``prefect deploy`` made it) with the configured
    environments and services as pick-lists and reason/requested_by required non-empty."""
    form = copy.deepcopy(schema)
    props = form["properties"]
    environments = sorted(config.environments)
    if not environments:
        raise ConfigError(f"{config.source or '<config>'}: no environment configured")
    services = sorted({s for env in config.environments.values() for s in env.services})
    per_env = "; ".join(
        f"{name}: {', '.join(sorted(config.environments[name].services))}" for name in environments
    )
    props["environment"]["enum"] = environments
    props["service"]["enum"] = services
    described = props["service"].get("description", "").rstrip()
    props["service"]["description"] = f"{described} Configured: {per_env}.".strip()
    for name in ("reason", "requested_by"):
        props[name]["minLength"] = 1
    form["additionalProperties"] = False  # no field the form does not show
    return form
