"""The ``rollback`` command line. Errors a user can make print one line and exit 2;
a refused rollback exits 3; a failed one exits 1; success (or a plan) exits 0."""

from __future__ import annotations

import getpass
import json
import os
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

# Prefect's own INFO chatter would drown the timeline; our lines are printed directly.
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import typer  # noqa: E402
from botocore.exceptions import BotoCoreError, ClientError  # noqa: E402

from rollback.errors import ConfigError, MissingTableError, RollbackError  # noqa: E402
from rollback.stopping import wait_for_stop  # noqa: E402

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3
STATUS_EXIT = {
    "succeeded": EXIT_OK,
    "planned": EXIT_OK,
    "refused": EXIT_REFUSED,
    "failed": EXIT_FAILED,
}

app = typer.Typer(
    help="Roll production deployments back safely and fast, with Prefect.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
history_app = typer.Typer(help="Deployment history: list, import.", no_args_is_help=False)
app.add_typer(history_app, name="history")

ConfigOpt = Annotated[str, typer.Option("--config", "-c", help="YAML config file.")]
EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment name.")]


def _err(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _config(path: str) -> Any:
    from rollback.config import load_config

    return load_config(path)


@app.command()
def run(
    config: ConfigOpt,
    env: EnvOpt,
    service: Annotated[str, typer.Option("--service", "-s", help="Service name.")],
    to: Annotated[str | None, typer.Option(help="Target version (default: last good).")] = None,
    reason: Annotated[str, typer.Option(help="Why roll back.")] = "",
    by: Annotated[str | None, typer.Option("--by", help="Who asks (default: $USER).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan only, change nothing.")] = False,
    confirm: Annotated[
        str | None, typer.Option(help="Typed confirmation for protected environments.")
    ] = None,
    allow_destroy: Annotated[
        bool, typer.Option(help="Allow plans that destroy resources.")
    ] = False,
    force_order: Annotated[
        bool,
        typer.Option(
            "--force-order",
            help="Vouch that --to is older when neither the platform nor the history can "
            "tell (recorded in the audit).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Last stdout line is JSON.")] = False,
) -> None:
    """Roll a service back through the rollback flow."""
    from rollback.models import RollbackRequest

    cfg = _config(config)
    cfg.service(env, service)  # unknown env/service: exit 2 before anything runs
    request = RollbackRequest(
        environment=env,
        service=service,
        to=to,
        reason=reason,
        requested_by=by or os.environ.get("USER") or "cli",
        trigger="manual",
        dry_run=dry_run,
        confirmation=confirm,
        allow_destroy=allow_destroy,
        force_order=force_order,
    )
    result = run_flow(request, config, quiet=as_json)
    if as_json:
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "headline"}))
    else:
        _print_result(result)
    raise typer.Exit(STATUS_EXIT.get(result["status"], EXIT_FAILED))


def run_flow(request: Any, config_path: str, quiet: bool = False) -> dict[str, Any]:
    """Run the rollback flow in this process, printing progress lines as they happen."""
    from deployments.cli.console import one_line_console
    from deployments.cli.local_api import tie_temporary_api
    from flows.outcome import requested_rollback, result_of
    from rollback import progress
    from rollback.text import log_safe

    one_line_console()  # one line per warning, never a traceback (the UI keeps them)
    tie_temporary_api()  # a killed CLI leaves no temporary Prefect server behind

    def show(line: str) -> None:
        stamp = datetime.now(UTC).strftime("%H:%M:%S")
        typer.echo(f"[{stamp}] {log_safe(line)}", err=quiet)

    unsubscribe = progress.subscribe(show)
    try:
        # The run ends in the state its outcome deserves (refused: Failed "Refused");
        # the dict printed here is the outcome, unchanged.
        state = requested_rollback(
            request=request, config_path=str(Path(config_path).resolve()), return_state=True
        )
        return result_of(state)
    finally:
        unsubscribe()


def _print_result(result: dict[str, Any]) -> None:
    typer.echo("")
    typer.echo(result.get("headline") or result["status"])
    typer.echo(
        f"  from {result['from_version']} to {result['to_version']}  status {result['status']}"
    )
    for c in result["checks"]:
        typer.echo(f"  {'✓' if c['passed'] else '✗'} {c['name']:<24} {c['detail']}")
    if result.get("reason"):
        typer.echo(f"  reason: {result['reason']}")
    typer.echo(f"  audit id: {result['audit_id']}   flow run: {result['flow_run_id']}")


@history_app.callback(invoke_without_command=True)
def history(
    ctx: typer.Context,
    config: Annotated[str | None, typer.Option("--config", "-c", help="YAML config.")] = None,
    env: Annotated[str | None, typer.Option("--env", "-e", help="Environment.")] = None,
    service: Annotated[str | None, typer.Option("--service", "-s")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Deploys and rollbacks, newest first."""
    if ctx.invoked_subcommand:
        return
    if not config or not env:
        raise _err("history needs --config FILE and --env ENV")
    from rollback.runtime import Runtime
    from rollback.stores.history import record_to_dict

    cfg = _config(config)
    cfg.environment(env)
    if service:
        cfg.service(env, service)
    rt = Runtime(cfg)
    rt.ensure_tables()
    records = rt.history.query(env, service, limit=limit)
    if as_json:
        typer.echo(json.dumps([record_to_dict(r) for r in records]))
        return
    typer.echo(f"{'finished':<21} {'service':<12} {'kind':<8} {'version':<16} {'status':<8} from")
    for r in records:
        when = r.finished_at or r.started_at
        typer.echo(
            f"{when.strftime('%Y-%m-%d %H:%M:%S') if when else '-':<21} {r.service:<12} "
            f"{r.kind:<8} {r.version:<16} {r.status:<8} {r.from_version or ''}"
        )


@history_app.command("import")
def history_import(
    file: Annotated[Path, typer.Argument(help="JSON Lines file, one record per line.")],
    config: ConfigOpt,
) -> None:
    """Load past deploys in bulk (one JSON object per line)."""
    from rollback.runtime import Runtime
    from rollback.stores.history import record_from_dict

    cfg = _config(config)
    try:
        lines = file.read_text().splitlines()
    except OSError as exc:
        raise _err(f"cannot read {file}: {exc.strerror or exc}") from None
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            record = record_from_dict(data)
            cfg.service(record.environment, record.service)
        except (ValueError, ConfigError) as exc:
            raise _err(f"{file}:{n}: {exc} (nothing imported)") from None
        records.append(record)
    rt = Runtime(cfg)
    rt.ensure_tables()
    result = rt.history.import_many(records)
    _clear_redeployed(rt, records)
    for n, reason in result.refused:
        typer.echo(f"{file}: record {n + 1}: refused: {reason}", err=True)
    typer.echo(f"imported {result.stored} record(s) into {cfg.stores.history_table} ({result})")


def _clear_redeployed(rt: Any, records: list[Any]) -> None:
    """A successful deploy that finished after a version was marked bad takes it off the
    bad list (a reused nginx color carrying a new release); an old one never does."""
    from rollback import decisions

    marks: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        key = (r.environment, r.service)
        if key not in marks:
            marks[key] = rt.markers.bad_marks(*key)
        if r.version in marks[key] and decisions.clears_mark(r, marks[key][r.version]):
            # Conditional in the store too: a mark made meanwhile is never cleared.
            rt.markers.clear_bad(*key, r.version, deployed_at=r.finished_at or r.started_at)


@app.command("record-deployment")
def record_deployment(
    config: ConfigOpt,
    env: EnvOpt,
    service: Annotated[str, typer.Option("--service", "-s")],
    version: Annotated[str, typer.Option(help="Version deployed (ECS: family:revision).")],
    status: Annotated[str, typer.Option(help="success or failed.")],
    image_tag: Annotated[str | None, typer.Option()] = None,
    commit: Annotated[str | None, typer.Option(help="Commit SHA.")] = None,
    committed: Annotated[str | None, typer.Option(help="Commit time, ISO 8601.")] = None,
    started: Annotated[str | None, typer.Option(help="ISO 8601.")] = None,
    finished: Annotated[str | None, typer.Option(help="ISO 8601 (default now).")] = None,
) -> None:
    """Append one deploy to the history (for CI pipelines)."""
    from rollback.models import iso, utcnow
    from rollback.runtime import Runtime
    from rollback.stores.history import record_from_dict

    cfg = _config(config)
    cfg.service(env, service)
    try:
        record = record_from_dict(
            {
                "environment": env,
                "service": service,
                "version": version,
                "status": status,
                "image_tag": image_tag,
                "commit_sha": commit,
                "committed_at": committed,
                "started_at": started,
                "finished_at": finished or iso(utcnow()),
            }
        )
    except ValueError as exc:
        raise _err(str(exc)) from None
    rt = Runtime(cfg)
    rt.ensure_tables()
    rt.history.append(record)
    _clear_redeployed(rt, [record])
    typer.echo(f"recorded {env}/{service} {version} {status}")
    if record.status == "success" and os.environ.get("PREFECT_API_URL"):
        from deployments.cli.verify import start_after_record

        start_after_record(cfg, record)


@app.command()
def audit(
    config: ConfigOpt,
    audit_id: Annotated[str, typer.Argument(help="Audit id of a rollback attempt.")],
) -> None:
    """Show one audit record as JSON."""
    from rollback.runtime import Runtime
    from rollback.stores.audit import audit_dict

    rt = Runtime(_config(config))
    rt.ensure_tables()
    if audit_id.startswith("unmark-"):  # the record of a `rollback unmark`
        unmarked = rt.markers.unmark_record(audit_id)
        if unmarked is None:
            raise _err(f"no audit record {audit_id!r}")
        typer.echo(json.dumps(unmarked, indent=2))
        return
    record = rt.audit.get(audit_id)
    if record is None:
        raise _err(f"no audit record {audit_id!r}")
    typer.echo(json.dumps(audit_dict(record), indent=2))


@app.command()
def unmark(
    config: ConfigOpt,
    env: EnvOpt,
    service: Annotated[str, typer.Option("--service", "-s")],
    version: Annotated[str, typer.Option(help="The version marked bad.")],
    reason: Annotated[str, typer.Option(help="Why it is good again (audited).")],
    by: Annotated[str, typer.Option("--by", help="Who vouches for it (audited).")],
) -> None:
    """Take a version off the bad list (audited): rollbacks may choose it again."""
    from rollback.runtime import Runtime

    if not reason.strip() or not by.strip():
        raise _err("unmark needs a --reason and a --by")
    cfg = _config(config)
    cfg.service(env, service)
    rt = Runtime(cfg)
    rt.ensure_tables()
    marks = rt.markers.bad_marks(env, service)
    if version not in marks:
        raise _err(f"{version} is not marked bad for {env}/{service}: nothing to unmark")
    # The audit record is written before the mark goes, so no unmark is ever unrecorded.
    audit_id = rt.markers.record_unmark(
        env,
        service,
        version,
        reason=reason,
        requested_by=by,
        marked_at=marks[version],
        authenticated_by=f"cli:{getpass.getuser()}",
    )
    rt.markers.clear_bad(env, service, version)
    typer.echo(f"unmarked {env}/{service} {version}; audit id {audit_id}")


@app.command()
def sandbox(
    port: Annotated[int, typer.Option(help="Port for the moto server.")] = 5055,
    config_out: Annotated[Path, typer.Option("--config-out")] = Path(".sandbox/config.yaml"),
) -> None:
    """Start a seeded local AWS sandbox (moto) and keep it up until interrupted."""
    from devstack import sandbox as sb

    with sb.moto_server(port) as url:
        os.environ.update(sb.SANDBOX_ENV | {"AWS_ENDPOINT_URL": url})
        sb.seed_all(config_out)
        typer.echo(f"sandbox up at {url}; config written to {config_out}")
        typer.echo("use it from another shell with:")
        for key, value in (sb.SANDBOX_ENV | {"AWS_ENDPOINT_URL": url}).items():
            typer.echo(f"  export {key}={value}")
        typer.echo(
            f"then: rollback run --config {config_out} --env staging --service api --reason test"
        )
        typer.echo("Ctrl-C to stop.")
        wait_for_stop(threading.Event())
        typer.echo("sandbox stopped")


@app.command()
def demo() -> None:
    """Sandbox + a real rollback flow run + the audit record, in one go."""
    from devstack import sandbox as sb
    from rollback.models import RollbackRequest
    from rollback.runtime import Runtime
    from rollback.stores.audit import audit_dict

    config_path = Path(".sandbox/demo-config.yaml")
    typer.echo("== starting the local AWS sandbox (moto server)")
    with sb.moto_server() as url:
        os.environ.update(sb.SANDBOX_ENV | {"AWS_ENDPOINT_URL": url})
        sb.seed_all(config_path)
        typer.echo(f"   {url}: ECS service prod/api runs api:4 (the deploy that failed)")
        typer.echo("== rolling prod/api back through the Prefect rollback flow")
        request = RollbackRequest(
            environment="prod",
            service="api",
            reason="v4 deploy failed its health checks",
            requested_by="demo",
            confirmation="ROLLBACK-PROD",
        )
        result = run_flow(request, str(config_path))
        _print_result(result)
        rt = Runtime(_config(str(config_path)))
        record = rt.audit.get(result["audit_id"])
        typer.echo("== the audit record")
        typer.echo(json.dumps(audit_dict(record), indent=2) if record else "(missing!)")
        typer.echo("== deployment history (newest first)")
        for r in rt.history.query("prod", "api", limit=5):
            typer.echo(f"   {r.kind:<8} {r.version:<8} {r.status:<8} {r.from_version or ''}")
        typer.echo("== the same flow rolls a Lambda alias back: prod/worker (alias live on v3)")
        lambda_result = run_flow(
            request.model_copy(update={"service": "worker", "reason": "error rate above 5%"}),
            str(config_path),
        )
        _print_result(lambda_result)
        results = [result, lambda_result]
        if any(r["status"] != "succeeded" for r in results):
            raise typer.Exit(EXIT_FAILED)


# -- subcommands from other modules --
from deployments.cli.serve import register as _register_serve  # noqa: E402

_register_serve(app)
from deployments.cli.report import register as _register_report  # noqa: E402

_register_report(app)
from deployments.cli.verify import register as _register_verify  # noqa: E402

_register_verify(app)
from deployments.cli.worker import register as _register_worker  # noqa: E402

_register_worker(app)


def main() -> None:
    # Every error ends in one line on stderr (outside text in it escaped), never a
    # traceback; ROLLBACK_DEBUG=1 shows the traceback of an unexpected one.
    from rollback.text import log_safe

    try:
        app()
    except (ConfigError, MissingTableError) as exc:  # fix the input or the setup
        typer.echo(f"error: {log_safe(exc)}", err=True)
        sys.exit(EXIT_USAGE)
    except RollbackError as exc:
        typer.echo(f"error: {log_safe(exc)}", err=True)
        sys.exit(EXIT_FAILED)
    except (BotoCoreError, ClientError) as exc:  # e.g. no credentials, access denied
        typer.echo(f"error: AWS: {log_safe(exc)}", err=True)
        sys.exit(EXIT_FAILED)
    except Exception as exc:
        if os.environ.get("ROLLBACK_DEBUG"):
            raise
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {log_safe(exc)} "
            "(ROLLBACK_DEBUG=1 shows the traceback)",
            err=True,
        )
        sys.exit(EXIT_FAILED)


if __name__ == "__main__":
    main()
