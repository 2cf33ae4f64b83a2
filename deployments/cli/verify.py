"""``rollback verify``: the verification analysis over a past window (retrospective, as
Kayenta offers) — prints the verdict and the evidence, never rolls anything back; exit 0
pass, 3 fail, 4 inconclusive, 2 usage/config error.

``rollback verify promote``: end the running bake of a service early as promoted (who,
when, why recorded; no rollback starts). Exit 0, or 2 when no bake is running.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from rollback.errors import ConfigError

if TYPE_CHECKING:
    from rollback.config import Config
    from rollback.models import DeploymentRecord

EXIT = {"pass": 0, "fail": 3, "inconclusive": 4}

verify_app = typer.Typer(
    invoke_without_command=True,
    no_args_is_help=False,
    help="Judge a past deploy's bake window (retrospective), or promote a running bake.",
)


def register(app: typer.Typer) -> None:
    app.add_typer(verify_app, name="verify")


ConfigOpt = Annotated[str | None, typer.Option("--config", "-c", help="YAML config file.")]
EnvOpt = Annotated[str | None, typer.Option("--env", "-e", help="Environment name.")]
ServiceOpt = Annotated[str | None, typer.Option("--service", "-s", help="Service name.")]


@verify_app.callback()
def verify(
    ctx: typer.Context,
    config: ConfigOpt = None,
    env: EnvOpt = None,
    service: ServiceOpt = None,
    deployed_at: Annotated[str | None, typer.Option(help="ISO time of the deploy.")] = None,
    bake_minutes: Annotated[
        int | None, typer.Option(help="Bake window (default: verification.bake_minutes).")
    ] = None,
    baseline_minutes: Annotated[
        int | None, typer.Option(help="Baseline (default: verification.baseline_minutes).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Last stdout line: JSON.")] = False,
) -> None:
    """Judge a past deploy's bake window against its baseline (nothing is rolled back)."""
    from rollback.config import load_config
    from rollback.config.verification import verification_for
    from rollback.models import parse_iso, utcnow
    from rollback.runtime import Runtime
    from rollback.text import log_safe
    from tasks.verification import analyse, fetch_windows

    if ctx.invoked_subcommand is not None:
        return  # `rollback verify promote ...`: its own options
    config, env, service, deployed_at = _required(
        ctx, config=config, env=env, service=service, deployed_at=deployed_at
    )
    cfg = load_config(config)
    settings = verification_for(cfg, env, service)
    if settings is None or not settings.metrics:
        raise ConfigError(f"no verification metrics configured for {env}/{service}")
    try:
        when = parse_iso(deployed_at)
    except ValueError:
        when = None
    if when is None:
        raise ConfigError(f"--deployed-at {deployed_at!r} is not an ISO time")
    changes = {
        k: v
        for k, v in (("bake_minutes", bake_minutes), ("baseline_minutes", baseline_minutes))
        if v is not None
    }
    if changes:
        try:
            settings = type(settings).model_validate(settings.model_dump() | changes)
        except ValueError as exc:
            raise ConfigError(f"invalid window: {exc}") from None
    source = Runtime(cfg).metric_series()
    judgement = analyse(settings, fetch_windows(source, settings, when, utcnow()))
    typer.echo(f"verdict: {judgement.verdict} ({len(judgement.minutes)} bake minute(s))")
    for e in judgement.evidence:
        typer.echo(f"  {log_safe(e.line())}")
    if judgement.rule:
        typer.echo(f"rule: {log_safe(judgement.rule)}")
    if as_json:
        data = judgement.as_dict()
        typer.echo(json.dumps(data, separators=(",", ":")))
    raise typer.Exit(EXIT[judgement.verdict])


def _required(ctx: typer.Context, **options: str | None) -> tuple[str, ...]:
    """The retrospective analysis's options, all required (as before the group)."""
    for name, value in options.items():
        if value is None:  # click's own words and exit code (2)
            ctx.fail(f"Missing option '--{name.replace('_', '-')}'.")
    return tuple(str(v) for v in options.values())


@verify_app.command("promote")
def promote(
    config: Annotated[str, typer.Option("--config", "-c", help="YAML config file.")],
    env: Annotated[str, typer.Option("--env", "-e", help="Environment name.")],
    service: Annotated[str, typer.Option("--service", "-s", help="Service name.")],
    reason: Annotated[str, typer.Option(help="Why (recorded with the bake).")] = (
        "promoted by hand"
    ),
) -> None:
    """End the running bake of a service early as promoted: no rollback starts."""
    import getpass

    from rollback.config import load_config
    from rollback.runtime import Runtime
    from rollback.text import log_safe

    cfg = load_config(config)
    cfg.service(env, service)
    if not reason.strip():
        raise ConfigError("--reason is empty: say why the bake is promoted")
    by = f"cli:{getpass.getuser()}"
    bake = Runtime(cfg).markers.promote_bake(env, service, by, reason.strip()[:500])
    if bake is None:
        raise ConfigError(f"no bake of {env}/{service} is running: nothing to promote")
    run = f", flow run {bake.run_id}" if bake.run_id else ""
    typer.echo(
        f"promoted {env}/{service} (deploy at {bake.deployed_at}{run}) by {by}: "
        f"{log_safe(bake.promote_reason or '')}; the bake ends within seconds, no rollback"
    )


def start_after_record(cfg: Config, record: DeploymentRecord) -> None:
    """After ``record-deployment --status success`` with a Prefect server: start the
    ``verify-deploy`` deployment for it (if the service has verification). A failure to
    start is a warning: the deploy is recorded either way."""
    from flows.verify_deploy import start_verification
    from rollback.models import iso
    from rollback.text import log_safe

    try:
        run = start_verification(
            cfg,
            record.environment,
            record.service,
            str(iso(record.finished_at)),
            record.version,
            mode="deployment",
        )
    except Exception as exc:  # noqa: BLE001 - recording succeeded; say why no bake runs
        typer.echo(f"warning: verification not started: {log_safe(exc)}", err=True)
        return
    if run:
        typer.echo(f"verification started (flow run {run})")
