"""What moto's ECS lacks: ``deploymentConfiguration`` (the deployment circuit breaker).

A real boto3 ECS client talking to the moto server over HTTP, whose
``describe_services`` answers also carry the circuit-breaker settings a test gives per
service name; every other call goes through unchanged.
"""

from __future__ import annotations

import copy
from typing import Any


class CircuitBreakerEcs:
    def __init__(self, client: Any, breakers: dict[str, dict[str, bool]]) -> None:
        self._client = client
        self.breakers = breakers

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def describe_services(self, **kwargs: Any) -> dict[str, Any]:
        out = copy.deepcopy(self._client.describe_services(**kwargs))
        for svc in out.get("services", []):
            breaker = self.breakers.get(svc.get("serviceName", ""))
            if breaker is not None:
                svc["deploymentConfiguration"] = {
                    "deploymentCircuitBreaker": dict(breaker),
                    "maximumPercent": 200,
                    "minimumHealthyPercent": 100,
                }
        return out
