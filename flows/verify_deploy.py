"""Deploy verification (bake window): after a successful deploy, compare the new
version's metrics with the baseline every minute; a ``fail`` asks for an automatic
rollback (trigger ``verification``) through the one ``Intake`` — same dedup, policy
(auto_rollback, cooldown, hourly cap) and audit as every other trigger.

The flow only fetches and records: the verdicts are pure functions
(``rollback.verification``). A deploy already older than its bake window is judged at
once (nothing to wait for), which is also how the retrospective CLI works.
A person can end a live bake early, from any process: ``rollback verify promote`` writes
a promote into the bake's marker (who, when, why), or the run is cancelled (abort); the
bake looks for both every few seconds (``flows.bake_control``) and then ends without a
rollback.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from typing import Any

from prefect import flow, get_run_logger
from prefect.exceptions import CancelledRun
from prefect.states import Cancelled

from flows.bake_control import BakeControl, Ending, live_bake
from flows.launch import EmbeddedLauncher, Intake, default_mode, make_launcher
from rollback.config import Config, load_config
from rollback.config.verification import VerificationSettings, verification_for
from rollback.health import probe
from rollback.models import RollbackRequest, iso, parse_iso, utcnow
from rollback.runtime import Runtime
from rollback.text import log_safe, markdown_escape
from rollback.verification import Judgement
from tasks.verification import Windows, analyse, fetch_windows_task, floor_minute

ROLLBACK_WAIT_S = 900


@flow(name="verify-deploy", persist_result=False)
def verify_deploy_flow(
    environment: str,
    service: str,
    deployed_at: str,
    version: str | None = None,
    config_path: str | None = None,
    mode: str | None = None,
) -> dict[str, Any]:
    """Watch ``environment/service`` for its bake window after the deploy at
    ``deployed_at`` (ISO); roll back on a ``fail`` verdict.

    Args:
        environment: Environment name from the config, e.g. prod.
        service: Service name within the environment, e.g. api.
        deployed_at: When the deploy finished (ISO 8601); the bake window starts here and
            the baseline ends here.
        version: The version deployed (shown in the evidence and the rollback reason).
        config_path: Path of the YAML config the run reads (default: $ROLLBACK_CONFIG).
        mode: How a rollback is started on fail: deployment (rollback-auto on the Prefect
            server) or embedded (in this process); default from the config.
    """
    log = get_run_logger()
    config = load_config(config_path)
    settings = verification_for(config, environment, service)
    started = parse_iso(deployed_at)
    if started is None:
        raise ValueError("deployed_at is required (ISO time of the deploy)")
    if settings is None or not settings.metrics:
        log.info("no verification configured for %s/%s", environment, service)
        return {"verdict": "inconclusive", "metrics": [], "rule": "no verification configured"}
    rt = Runtime(config)  # one runtime for the whole verification
    judgement, windows, ending = bake(rt, settings, environment, service, started, version)
    log.info(
        "verification of %s/%s (%s): %s after %d minute(s)",
        environment,
        service,
        log_safe(version or "?"),
        ending.verdict if ending else judgement.verdict,
        len(judgement.minutes),
    )
    _artifact(environment, service, version, judgement, windows, ending)
    result = judgement.as_dict()
    if ending is not None and ending.verdict == "aborted":
        # The run was cancelled: it ends Cancelled (not Completed) and starts nothing.
        # (Prefect: a returned state is the run's final state; a direct call raises
        # CancelledRun, which the embedded path logs.)
        return Cancelled(  # type: ignore[return-value]
            message="bake aborted (run cancelled): nothing rolled back"
        )
    if ending is not None:  # promoted: nothing is rolled back
        return result | ending.as_result(judgement.verdict)
    if judgement.verdict == "fail":
        result["rollback"] = request_rollback(
            rt, environment, service, started, version, judgement, mode
        )
    return result


def bake(
    rt: Runtime,
    settings: VerificationSettings,
    environment: str,
    service: str,
    deployed_at: datetime,
    version: str | None = None,
) -> tuple[Judgement, Windows, Ending | None]:
    """Judge every whole minute of the bake window as it ends; stop early on ``fail``
    or when a person ends the bake (promote, abort)."""
    source = rt.metric_series()
    end = floor_minute(deployed_at) + timedelta(minutes=settings.bake_minutes)
    health_url = getattr(rt.config.service(environment, service), "health_url", None)
    control = None
    if utcnow() < end:  # a live bake: a person may end it early
        control = BakeControl.start(rt, live_bake(environment, service, deployed_at, version, end))
    probes: list[bool] = []
    while True:
        now = utcnow()
        live = now < end
        if live and health_url:  # a probe per minute of a live bake (none afterwards)
            probes.append(probe(health_url)[0])
        windows = fetch_windows_task(source, settings, deployed_at, min(now, end))
        judgement = analyse(settings, windows, probes)
        if not live or judgement.verdict == "fail":
            return judgement, windows, control.close(judgement.verdict) if control else None
        # Wait for the next minute to end (CloudWatch publishes whole minutes).
        next_minute = floor_minute(now) + timedelta(minutes=1, seconds=5)
        if control is None:
            time.sleep(max(1.0, (next_minute - utcnow()).total_seconds()))
        elif (ending := control.wait(next_minute)) is not None:
            return judgement, windows, ending


def request_rollback(
    rt: Runtime,
    environment: str,
    service: str,
    deployed_at: datetime,
    version: str | None,
    judgement: Judgement,
    mode: str | None,
) -> dict[str, Any]:
    """Ask for the rollback through the intake (one bake is one source event)."""
    lines = judgement.summary(2)
    request = RollbackRequest(
        environment=environment,
        service=service,
        reason=(f"verification failed for {version or 'the new version'}: " + "; ".join(lines))[
            :500
        ],
        requested_by="verification",
        trigger="verification",
        source_event_id=f"verification:{environment}/{service}@{iso(deployed_at)}",
        authenticated_by="verification",
    )
    launcher = make_launcher(rt.config, mode)
    try:
        acceptance = Intake(rt.config, launcher, rt).submit(request)
        if isinstance(launcher, EmbeddedLauncher):
            launcher.wait_idle(ROLLBACK_WAIT_S)
    finally:
        launcher.close()
    get_run_logger().warning(
        "verification failed: rollback %s (audit %s)", acceptance.status, acceptance.audit_id
    )
    return {"status": acceptance.status, "audit_id": acceptance.audit_id}


def _chart(judgement: Judgement, windows: Windows) -> str:
    """The baseline-vs-bake chart as an inline PNG (empty when it cannot be drawn)."""
    import base64

    from reports.verification_chart import verification_png

    names = [e.name for e in judgement.evidence if e.name != "health-url"]
    try:
        data = verification_png(
            names, windows.baseline[: len(names)], windows.bake[: len(names)], "baseline vs bake"
        )
    except (ValueError, RuntimeError) as exc:
        get_run_logger().warning("verification chart not drawn: %s", log_safe(exc))
        return ""
    return f"\n![baseline vs bake](data:image/png;base64,{base64.b64encode(data).decode()})\n"


def _artifact(
    environment: str,
    service: str,
    version: str | None,
    judgement: Judgement,
    windows: Windows,
    ending: Ending | None = None,
) -> None:
    """A markdown artifact with the evidence per metric (and who ended the bake)."""
    from prefect.artifacts import create_markdown_artifact

    rows = "\n".join(
        f"| {markdown_escape(e.name)} | {e.verdict} | {e.baseline:.4g} | {e.bake:.4g} | "
        f"{'' if e.u is None else f'{e.u:g}'} | "
        f"{'' if e.p_value is None else f'{e.p_value:.3g}'} | "
        f"{'' if e.effect is None else f'{e.effect:+.0%}'} | {markdown_escape(e.rule or '')} |"
        for e in judgement.evidence
    )
    verdict = ending.verdict if ending else judgement.verdict
    ended = (
        f"**{ending.verdict.capitalize()} by {markdown_escape(ending.by)}** at {ending.at}: "
        f"{markdown_escape(ending.reason)} (analysis so far: {judgement.verdict}; "
        "nothing rolled back)\n\n"
        if ending
        else ""
    )
    text = (
        f"# Verification of {markdown_escape(environment)}/{markdown_escape(service)} "
        f"({markdown_escape(version or '?')}): {verdict}\n\n{ended}"
        f"Deploy at {iso(windows.start)}; minutes: {', '.join(judgement.minutes)}\n\n"
        "| metric | verdict | baseline | bake | U | p | effect | rule |\n"
        "|---|---|---|---|---|---|---|---|\n" + rows + "\n" + _chart(judgement, windows)
    )
    try:
        create_markdown_artifact(
            key=f"verification-{environment}-{service}".lower().replace("_", "-"),
            markdown=text,
            description=f"verification: {verdict}",
        )
    except Exception as exc:  # noqa: BLE001 - a lost artifact never changes the verdict
        get_run_logger().warning("verification artifact not created: %s", log_safe(exc))


VERIFY_DEPLOYMENT = "verify-deploy/verify-deploy"


def start_verification(
    config: Config,
    environment: str,
    service: str,
    deployed_at: str,
    version: str | None = None,
    mode: str | None = None,
) -> str | None:
    """Start the bake of a successful deploy; None when the service has no verification.

    Deployment mode: ``run_deployment`` of ``verify-deploy`` (returns at once; the same
    deploy is the same run through its idempotency key). Embedded: a background thread
    of this process runs the flow. Returns the flow run id (deployment) or ``embedded``.
    """
    settings = verification_for(config, environment, service)
    if settings is None or not settings.metrics:
        return None
    hooks = config.webhooks
    params: dict[str, Any] = {
        "environment": environment,
        "service": service,
        "deployed_at": deployed_at,
        "version": version,
        "config_path": (hooks.flow_config_path if hooks else None) or config.source or None,
    }
    if (mode or default_mode(config)) == "deployment":
        from prefect.deployments import run_deployment

        run = run_deployment(
            VERIFY_DEPLOYMENT,
            parameters=params | {"mode": "deployment"},
            timeout=0,
            idempotency_key=f"verify:{environment}/{service}@{deployed_at}",
            as_subflow=False,
            tags=["verification"],
        )
        return str(getattr(run, "id", ""))
    thread = threading.Thread(
        target=_run_quietly,
        kwargs=params | {"mode": "embedded"},
        name=f"verify-{environment}-{service}",
        daemon=True,
    )
    thread.start()
    with _BAKES_LOCK:
        _BAKES[:] = [t for t in _BAKES if t.is_alive()] + [thread]
    return "embedded"


_BAKES: list[threading.Thread] = []
_BAKES_LOCK = threading.Lock()


def wait_for_bakes(timeout: float = 60) -> bool:
    """Wait for the embedded bakes of this process to end (tests, shutdown)."""
    deadline = time.monotonic() + timeout
    with _BAKES_LOCK:
        threads = list(_BAKES)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in threads)


def _run_quietly(**params: Any) -> None:
    try:
        verify_deploy_flow(**params)
    except CancelledRun:
        logging.getLogger(__name__).info(
            "verification of %s/%s aborted", params["environment"], params["service"]
        )
    except Exception:  # noqa: BLE001 - a background bake must never die silently
        logging.getLogger(__name__).exception(
            "verification of %s/%s crashed", params["environment"], params["service"]
        )
