"""nginx blue/green target: which color is live, the atomic link switch, and the
restore-on-failure rule (with a stand-in for the nginx binary; files are real)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from rollback.errors import NeedsHumanError, NotFoundError, TargetError
from rollback.targets.base import parse_service_config
from rollback.targets.nginx import (
    NginxServiceConfig,
    NginxTarget,
    color_of,
    link_text,
    other_colors,
    replace_link,
)

UPSTREAMS = {"blue": Path("/etc/nginx/up/blue.conf"), "green": Path("/etc/nginx/up/green.conf")}


# -- pure helpers --------------------------------------------------------------------------
def test_color_of_relative_and_absolute_links() -> None:
    link = Path("/etc/nginx/up/active.conf")
    assert color_of(link, "blue.conf", UPSTREAMS) == "blue"
    assert color_of(link, "/etc/nginx/up/green.conf", UPSTREAMS) == "green"
    assert color_of(link, "./sub/../green.conf", UPSTREAMS) == "green"
    assert color_of(link, "red.conf", UPSTREAMS) is None


def test_candidates_are_the_other_colors_in_config_order() -> None:
    assert other_colors({"blue": 1, "green": 2, "canary": 3}, "green") == ["blue", "canary"]


def test_link_text_is_relative_beside_the_link() -> None:
    link = Path("/etc/nginx/up/active.conf")
    assert link_text(link, Path("/etc/nginx/up/green.conf")) == "green.conf"
    assert link_text(link, Path("/srv/colors/green.conf")) == "/srv/colors/green.conf"


def test_replace_link_swaps_in_place(tmp_path: Path) -> None:
    # GIVEN a link to blue WHEN it is replaced by one to green
    link = tmp_path / "active.conf"
    os.symlink("blue.conf", link)
    replace_link(link, "green.conf")
    # THEN the link names green and no temporary file is left
    assert os.readlink(link) == "green.conf"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["active.conf"]


def test_config_needs_two_colors() -> None:
    base = {"type": "nginx", "conf": "/c", "upstreams_dir": "/u", "active_link": "a"}
    one = {"blue": {"upstream_file": "b.conf", "health_url": "http://b/"}}
    with pytest.raises(ValueError, match="at least two colors"):
        parse_service_config({**base, "colors": one})
    with pytest.raises(ValueError, match="colors.blue.health_url"):
        parse_service_config(
            {**base, "colors": {**one, "blue": {"upstream_file": "b.conf"}, "green": one["blue"]}}
        )


# -- the switch, with a stand-in for the nginx binary ---------------------------------------
class FakeNginx:
    """Records test/reload calls; fails the ones named in ``fail`` (a list consumed in
    order, so a reload can fail once and then succeed)."""

    conf = "/etc/nginx/nginx.conf"

    def __init__(self, fail: list[str] | None = None) -> None:
        self.fail = list(fail or [])
        self.calls: list[tuple[str, str]] = []
        self.link: Path | None = None

    def _call(self, what: str) -> None:
        assert self.link is not None
        self.calls.append((what, os.readlink(self.link)))
        if what in self.fail:
            self.fail.remove(what)
            raise TargetError(f"nginx {what} failed: emerg")

    def test(self) -> None:
        self._call("test")

    def reload(self) -> None:
        self._call("reload")


def make_target(tmp_path: Path, fake: FakeNginx, **extra: Any) -> NginxTarget:
    for color in ("blue", "green"):
        (tmp_path / f"{color}.conf").write_text(f"upstream app {{ server {color}:80; }}\n")
    os.symlink("blue.conf", tmp_path / "active.conf")
    cfg = parse_service_config(
        {
            "type": "nginx",
            "conf": str(tmp_path / "nginx.conf"),
            "upstreams_dir": str(tmp_path),
            "active_link": "active.conf",
            "colors": {
                c: {"upstream_file": f"{c}.conf", "health_url": "http://127.0.0.1:9/"}
                for c in ("blue", "green")
            },
            "health_checks": 1,
            "health_interval_s": 0.01,
            **extra,
        }
    )
    assert isinstance(cfg, NginxServiceConfig)
    fake.link = tmp_path / "active.conf"
    return NginxTarget(cfg, cli=fake)  # type: ignore[arg-type]


def test_switch_tests_then_reloads_and_keeps_a_backup(tmp_path: Path) -> None:
    fake = FakeNginx()
    target = make_target(tmp_path, fake)
    assert target.current().id == "blue"
    assert [v.id for v in target.candidates()] == ["green"]
    # WHEN the target switches to green
    target.execute(target.lookup("green"))
    # THEN the link was swapped before the test and the reload, and blue is the backup
    assert fake.calls == [("test", "green.conf"), ("reload", "green.conf")]
    assert target.current().id == "green"
    assert os.readlink(tmp_path / "active.conf.previous") == "blue.conf"
    assert [c.passed for c in target.verify(target.lookup("green"))] == [True]
    assert [c.passed for c in target.verify(target.lookup("blue"))] == [False]


@pytest.mark.parametrize("failing", ["test", "reload"])
def test_failing_step_restores_the_previous_link(tmp_path: Path, failing: str) -> None:
    fake = FakeNginx(fail=[failing])
    target = make_target(tmp_path, fake)
    # WHEN a step of the switch fails
    with pytest.raises(TargetError, match="restored .*active.conf -> blue.conf") as err:
        target.execute(target.lookup("green"))
    # THEN the link is back on blue and nginx was reloaded on it
    assert target.current().id == "blue"
    assert fake.calls[-1] == ("reload", "blue.conf")
    step = "nginx -t" if failing == "test" else "reload"
    assert f"failed at {step}:" in str(err.value)


def test_failing_health_through_nginx_restores_too(tmp_path: Path) -> None:
    # GIVEN the front health URL does not answer (port 9: discard, closed here)
    fake = FakeNginx()
    target = make_target(tmp_path, fake, health_url="http://127.0.0.1:9/")
    with pytest.raises(TargetError, match="health through nginx"):
        target.execute(target.lookup("green"))
    assert target.current().id == "blue"


def test_failed_restore_needs_a_human(tmp_path: Path) -> None:
    fake = FakeNginx(fail=["reload", "reload"])
    target = make_target(tmp_path, fake)
    with pytest.raises(NeedsHumanError, match="fix nginx by hand"):
        target.execute(target.lookup("green"))


def test_unknown_link_and_color_are_not_found(tmp_path: Path) -> None:
    target = make_target(tmp_path, FakeNginx())
    with pytest.raises(NotFoundError, match="no color 'red'"):
        target.lookup("red")
    replace_link(tmp_path / "active.conf", "red.conf")
    with pytest.raises(NotFoundError, match="no configured color"):
        target.current()


def test_check_refuses_an_unreachable_color(tmp_path: Path) -> None:
    target = make_target(tmp_path, FakeNginx())
    checks = {c.name: c for c in target.check(target.current(), target.lookup("green"))}
    assert checks["upstream_file"].passed and checks["nginx_config"].passed
    assert not checks["target_color_health"].passed
    assert "unreachable" in checks["target_color_health"].detail
