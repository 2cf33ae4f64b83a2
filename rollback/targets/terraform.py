"""Terraform stacks: roll back by re-applying the stack with the previous image tag.

The version is the value of one input variable (``var``, default ``image_tag``). What
runs now is read from the state: the configuration must expose an output of the same
name (or the one named by ``output``) that echoes the variable::

    variable "image_tag" { type = string }
    output "image_tag" { value = var.image_tag }

Outputs are stored in the state at apply time, so that output is the value the stack
was last applied with. Image tags carry no order: the deployment history (or ``--to``)
says which tag to go back to; the platform offers no candidates of its own.

python-terraform is used behind ``TerraformCli`` only, which hides its quirks: it
breaks on ``output("name")`` and ``destroy()``, and warns (DeprecationWarning) on every
non-zero exit code, including plan's "changes present" exit code 2.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from rollback.errors import NotFoundError, TargetError, TransientError
from rollback.models import CheckResult, StabilizeResult, Version
from rollback.targets.base import DESTROY_CHECK, Progress, ServiceConfig, TargetBase, register

log = logging.getLogger(__name__)
MAX_ADDRESSES = 10  # addresses named in one check detail


class TerraformServiceConfig(ServiceConfig):
    type: Literal["terraform"]
    working_dir: str
    var: str = Field(default="image_tag", description="the variable that carries the version")
    output: str | None = Field(
        default=None, description="output holding the applied version (default: same as var)"
    )
    workspace: str | None = None
    backend_config: dict[str, str] = Field(default_factory=dict)
    var_files: list[str] = Field(default_factory=list)
    terraform_bin: str = "terraform"


# -- the plan, as our own model ----------------------------------------------------------
@dataclass(frozen=True)
class PlanSummary:
    """What a saved plan would do: (action, address) per changed resource, and the
    names of outputs whose value changes."""

    changes: tuple[tuple[str, str], ...] = ()
    outputs: tuple[str, ...] = ()

    def count(self, *actions: str) -> int:
        return sum(1 for action, _ in self.changes if action in actions)

    @property
    def add(self) -> int:
        return self.count("create", "replace")

    @property
    def change(self) -> int:
        return self.count("update")

    @property
    def destroy(self) -> int:
        return self.count("delete", "replace")

    @property
    def destroyed(self) -> tuple[str, ...]:
        return tuple(addr for action, addr in self.changes if action in ("delete", "replace"))

    @property
    def empty(self) -> bool:
        return not self.changes and not self.outputs

    def counts(self) -> str:
        return f"{self.add} to add, {self.change} to change, {self.destroy} to destroy"

    def describe(self) -> str:
        """One line for a check detail: counts, then the addresses by action."""
        if self.empty:
            return "no changes"
        items = [f"{action} {addr}" for action, addr in self.changes]
        if self.outputs:
            items.append(f"output {', '.join(self.outputs)}")
        return f"{self.counts()}: {_shorten(items)}"


def _action(actions: Sequence[str]) -> str | None:
    """Terraform's action list as one word; None for no-op and data-source reads."""
    acts = tuple(actions)
    if acts in ((), ("no-op",), ("read",)):
        return None
    if len(acts) == 1:
        return acts[0]  # create, update, delete, forget
    if set(acts) == {"create", "delete"}:
        return "replace"
    return "+".join(acts)


def summarize_plan(doc: Mapping[str, Any]) -> PlanSummary:
    """Pure: the PlanSummary of ``terraform show -json PLANFILE``."""
    changes = []
    for rc in doc.get("resource_changes") or []:
        if rc.get("mode", "managed") != "managed":
            continue
        action = _action(rc.get("change", {}).get("actions", []))
        if action:
            changes.append((action, rc["address"]))
    outputs = sorted(
        name
        for name, oc in (doc.get("output_changes") or {}).items()
        if _action(oc.get("actions", [])) is not None
    )
    return PlanSummary(tuple(changes), tuple(outputs))


def plan_checks(var: str, tag: str, summary: PlanSummary) -> list[CheckResult]:
    """Pure: the plan summary as a passing check, plus the destroy check."""
    checks = [CheckResult("terraform_plan", True, f"plan {var}={tag}: {summary.describe()}")]
    if summary.destroy:
        checks.append(
            CheckResult(
                DESTROY_CHECK,
                False,
                f"the plan destroys {summary.destroy} resource(s): "
                f"{_shorten(list(summary.destroyed))}; set allow_destroy to proceed",
            )
        )
    else:
        checks.append(CheckResult(DESTROY_CHECK, True, "the plan destroys nothing"))
    return checks


def drift_check(var: str, tag: str, summary: PlanSummary) -> CheckResult:
    """Pure: after the apply, a plan with the target must show no changes."""
    if summary.empty:
        return CheckResult("terraform_no_drift", True, f"plan {var}={tag} shows no changes")
    return CheckResult(
        "terraform_no_drift",
        False,
        f"plan {var}={tag} still shows changes (drift): {summary.describe()}",
    )


def _shorten(items: list[str]) -> str:
    head = ", ".join(items[:MAX_ADDRESSES])
    more = len(items) - MAX_ADDRESSES
    return head + (f" (+{more} more)" if more > 0 else "")


# -- the adapter: the one place python-terraform is called --------------------------------
class TerraformCli:
    """Terraform commands in one working directory, each returning our own values.

    ``terraform`` may be injected (a ``python_terraform.Terraform``-like object).
    """

    def __init__(
        self,
        working_dir: str,
        *,
        binary: str = "terraform",
        var_files: Sequence[str] = (),
        terraform: Any = None,
    ) -> None:
        self.working_dir = working_dir
        self.binary = binary
        self.var_files = list(var_files)
        self._tf = terraform

    @property
    def tf(self) -> Any:
        if self._tf is None:
            from python_terraform import Terraform

            self._tf = Terraform(working_dir=self.working_dir, terraform_bin_path=self.binary)
        return self._tf

    def _run(self, what: str, call: Any, *args: Any, ok: tuple[int, ...] = (0,), **kw: Any) -> Any:
        """Run one python-terraform call; translate a failing exit code."""
        with warnings.catch_warnings():
            # python-terraform calls the deprecated Logger.warn on any non-zero exit code.
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                rc, out, err = call(*args, **kw)
            except OSError as exc:
                raise TargetError(
                    f"cannot run {self.binary!r} for {what}: {exc}; is terraform on PATH?"
                ) from exc
        if rc in ok:
            return rc, out
        tail = " ".join((err or out or "").split())[-600:]
        message = f"terraform {what} in {self.working_dir} failed (exit {rc}): {tail}"
        if "state lock" in (err or ""):
            raise TransientError(message)
        raise TargetError(message)

    def init(self, backend_config: Mapping[str, str] | None = None) -> None:
        """``terraform init`` without python-terraform's default ``-reconfigure``: that
        flag makes Terraform ask to migrate existing workspace states (fails without
        input), and a changed backend should stop the rollback, not be reset silently."""
        from python_terraform import IsNotFlagged

        self._run(
            "init",
            self.tf.init,
            backend_config=dict(backend_config or {}) or None,
            reconfigure=IsNotFlagged,
            var=None,
        )

    def select_workspace(self, workspace: str) -> None:
        self._run(f"workspace select {workspace}", self.tf.cmd, "workspace select", workspace)

    def outputs(self) -> dict[str, Any]:
        """Every output's value from the state (never ``output("name")``: broken)."""
        from python_terraform import IsFlagged

        _, out = self._run("output", self.tf.cmd, "output", json=IsFlagged, no_color=IsFlagged)
        return {name: o.get("value") for name, o in json.loads(out or "{}").items()}

    def plan(self, variables: Mapping[str, str], plan_file: Path) -> bool:
        """Save a plan; True when it has changes (detailed exit code 2)."""
        with self._var_files(variables) as files:
            rc, _ = self._run(
                "plan", self.tf.plan, ok=(0, 2), var=None, var_file=files, out=str(plan_file)
            )
        return bool(rc == 2)

    def show_plan(self, plan_file: Path) -> PlanSummary:
        from python_terraform import IsFlagged

        _, out = self._run(
            "show", self.tf.cmd, "show", str(plan_file), json=IsFlagged, no_color=IsFlagged
        )
        return summarize_plan(json.loads(out))

    def apply(self, variables: Mapping[str, str]) -> None:
        with self._var_files(variables) as files:
            self._run("apply", self.tf.apply, skip_plan=True, var=None, var_file=files)

    def apply_plan(self, plan_file: Path) -> None:
        """Apply a saved plan exactly (no new plan, no prompt)."""
        from python_terraform import IsFlagged

        self._run(
            "apply (saved plan)",
            self.tf.cmd,
            "apply",
            str(plan_file),
            input=False,
            no_color=IsFlagged,
        )

    @contextmanager
    def _var_files(self, variables: Mapping[str, str]) -> Iterator[list[str]]:
        """The configured var files, then ours last so that our value wins (-var-file
        and -var apply in command-line order; python-terraform puts -var first)."""
        with tempfile.TemporaryDirectory(prefix="rollback-tf-") as tmp:
            ours = Path(tmp) / "rollback.auto.tfvars.json"
            ours.write_text(json.dumps(dict(variables)))
            yield [*self.var_files, str(ours)]


# -- the target ----------------------------------------------------------------------------
@register("terraform", TerraformServiceConfig)
class TerraformTarget(TargetBase):
    config: TerraformServiceConfig

    def __init__(self, config: TerraformServiceConfig, cli: TerraformCli | None = None) -> None:
        super().__init__(config)
        self._cli = cli
        self._ready = False
        self._checked_plans: dict[str, Path] = {}

    @property
    def cli(self) -> TerraformCli:
        if self._cli is None:
            cfg = self.config
            self._cli = TerraformCli(
                cfg.working_dir, binary=cfg.terraform_bin, var_files=cfg.var_files
            )
        if not self._ready:
            # Idempotent; fetches nothing new when .terraform is already set up.
            self._cli.init(self.config.backend_config)
            if self.config.workspace:
                self._cli.select_workspace(self.config.workspace)
            self._ready = True
        return self._cli

    @property
    def output_name(self) -> str:
        return self.config.output or self.config.var

    def _version(self, tag: str) -> Version:
        return Version(id=tag, label=f"{self.config.var}={tag}", detail=(("var", self.config.var),))

    def current(self) -> Version:
        outputs = self.cli.outputs()
        value = outputs.get(self.output_name)
        if value is None or value == "":
            raise NotFoundError(
                f"the terraform state in {self.config.working_dir} has no output "
                f"{self.output_name!r}: the configuration must declare "
                f'output "{self.output_name}" {{ value = var.{self.config.var} }} and be applied'
            )
        return self._version(str(value))

    def lookup(self, spec: str) -> Version:
        tag = spec.strip()
        if not tag:
            raise NotFoundError(f"an empty {self.config.var} is not a version")
        return self._version(tag)

    def candidates(self) -> list[Version]:
        return []  # tags carry no order: the deployment history decides

    def _plan(self, target: Version, keep: bool = False) -> tuple[bool, PlanSummary]:
        """Plan for ``target``; with ``keep`` the saved plan is kept for ``execute``, so
        what is applied is exactly what the checks saw."""
        tmp = tempfile.mkdtemp(prefix="rollback-plan-")
        plan_file = Path(tmp) / "rollback.tfplan"
        try:
            changed = self.cli.plan({self.config.var: target.id}, plan_file)
            summary = self.cli.show_plan(plan_file)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        if keep:
            self._forget_plan(target.id)
            self._checked_plans[target.id] = plan_file
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        return changed, summary

    def _forget_plan(self, tag: str) -> Path | None:
        plan_file = self._checked_plans.pop(tag, None)
        if plan_file is not None:
            shutil.rmtree(plan_file.parent, ignore_errors=True)
        return plan_file

    def check(self, current: Version, target: Version) -> list[CheckResult]:
        try:
            _, summary = self._plan(target, keep=True)
        except TransientError:
            raise
        except TargetError as exc:
            return [CheckResult("terraform_plan", False, str(exc))]
        log.info("terraform plan %s=%s: %s", self.config.var, target.id, summary.describe())
        return plan_checks(self.config.var, target.id, summary)

    def execute(self, target: Version) -> None:
        log.info("terraform apply %s %s=%s", self.config.working_dir, self.config.var, target.id)
        plan_file = self._checked_plans.get(target.id)
        if plan_file is None:  # e.g. a saga putting a step back: plan and apply now
            self.cli.apply({self.config.var: target.id})
            return
        # Apply the plan the checks approved; Terraform refuses it if the state moved
        # since (a stale plan), so nothing unchecked is ever applied.
        try:
            self.cli.apply_plan(plan_file)
        finally:
            self._forget_plan(target.id)

    def stabilize(self, target: Version, timeout_s: float, progress: Progress) -> StabilizeResult:
        detail = "terraform apply has returned: nothing to wait for"
        progress(detail)
        return StabilizeResult(True, detail, 0)

    def verify(self, target: Version) -> list[CheckResult]:
        changed, summary = self._plan(target)
        if changed and summary.empty:  # exit code 2 without a listed change: still drift
            summary = PlanSummary(outputs=("(unlisted change)",))
        applied = self.cli.outputs().get(self.output_name)
        return [
            drift_check(self.config.var, target.id, summary),
            CheckResult(
                "terraform_applied_version",
                applied == target.id,
                f"state output {self.output_name} = {applied!r}",
            ),
        ]
