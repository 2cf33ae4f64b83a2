"""Status transitions, config validation errors, history record parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollback.config import load_config, parse_config
from rollback.errors import ConfigError
from rollback.models import TRANSITIONS, Status, allowed_predecessors
from rollback.stores.history import record_from_dict, record_to_dict

VALID = {
    "environments": {
        "prod": {
            "protected": True,
            "services": {"api": {"type": "ecs", "cluster": "c", "service": "api"}},
        }
    }
}


class TestStatus:
    def test_final_states_have_no_way_out(self):
        finals = {s for s in Status if s.final}
        assert finals == {
            Status.REFUSED,
            Status.PLANNED,
            Status.SUCCEEDED,
            Status.FAILED,
            Status.INTERRUPTED,
            Status.ABSORBED,
        }

    def test_the_happy_path_is_a_chain_of_allowed_transitions(self):
        path = [Status.REQUESTED, Status.EXECUTING, Status.STABILIZING, Status.SUCCEEDED]
        for a, b in zip(path, path[1:], strict=False):
            assert b in TRANSITIONS[a]

    def test_no_going_back(self):
        assert Status.REQUESTED not in allowed_predecessors(Status.EXECUTING) - {Status.REQUESTED}
        assert allowed_predecessors(Status.REQUESTED) == frozenset()
        assert Status.SUCCEEDED not in allowed_predecessors(Status.FAILED)
        assert allowed_predecessors(Status.INTERRUPTED) == {
            Status.REQUESTED,
            Status.EXECUTING,
            Status.STABILIZING,
        }


class TestConfig:
    def test_valid_config_and_defaults(self):
        cfg = parse_config(VALID)
        assert cfg.stores.audit_table == "rollback-audit-log"
        assert cfg.confirmation_for("prod") == "ROLLBACK-PROD"
        assert cfg.service("prod", "api").stabilize_timeout_s == 600

    @pytest.mark.parametrize(
        ("mutate", "message"),
        [
            (lambda d: d["environments"]["prod"].update(protectd=True), "protectd: unknown key"),
            (
                lambda d: d["environments"]["prod"]["services"]["api"].pop("cluster"),
                "cluster: Field required",
            ),
            (
                lambda d: d["environments"]["prod"]["services"]["api"].update(type="k8s"),
                "unknown service type 'k8s'",
            ),
            (
                lambda d: d["environments"]["prod"]["services"]["api"].update(clustr="x"),
                "clustr: unknown key",
            ),
            (lambda d: d.update(stores={"audit_tabel": "x"}), "stores.audit_tabel: unknown key"),
            (lambda d: d.pop("environments"), "environments: Field required"),
            (lambda d: d["environments"]["prod"].update(services={}), "at least one service"),
        ],
    )
    def test_errors_name_the_key(self, mutate, message):
        import copy

        data = copy.deepcopy(VALID)
        mutate(data)
        with pytest.raises(ConfigError) as err:
            parse_config(data, "cfg.yaml")
        assert message in str(err.value) and "cfg.yaml" in str(err.value)

    def test_unknown_environment_and_service(self):
        cfg = parse_config(VALID)
        with pytest.raises(ConfigError, match="unknown environment 'qa'.*configured: prod"):
            cfg.environment("qa")
        with pytest.raises(ConfigError, match="unknown service 'web'.*configured: api"):
            cfg.service("prod", "web")

    def test_file_errors(self, tmp_path: Path):
        with pytest.raises(ConfigError, match="cannot read config"):
            load_config(tmp_path / "missing.yaml")
        broken = tmp_path / "broken.yaml"
        broken.write_text("environments: [unclosed")
        with pytest.raises(ConfigError, match="not valid YAML"):
            load_config(broken)
        with pytest.raises(ConfigError, match="no config given"):
            load_config(None)

    def test_a_file_is_parsed_again_only_when_its_text_changes(self, tmp_path: Path):
        import json

        path = tmp_path / "config.yaml"
        path.write_text(json.dumps(VALID))
        first = load_config(path)
        # The same text: the same parsed config (a long-lived worker parses it once)
        assert load_config(path) is first
        # A changed file is read as it is now, never from the cache
        changed = json.loads(json.dumps(VALID))
        changed["environments"]["prod"]["services"]["api"]["cluster"] = "other"
        path.write_text(json.dumps(changed))
        again = load_config(path)
        assert again is not first
        assert again.service("prod", "api").cluster == "other"  # type: ignore[attr-defined]
        path.write_text("environments: [unclosed")
        with pytest.raises(ConfigError, match="not valid YAML"):
            load_config(path)


class TestHistoryRecords:
    def test_round_trip(self):
        data = {
            "environment": "prod",
            "service": "api",
            "version": "api:3",
            "status": "success",
            "kind": "deploy",
            "image_tag": "v3",
            "committed_at": "2026-01-01T00:00:00Z",
            "started_at": "2026-01-01T01:00:00Z",
            "finished_at": "2026-01-01T01:04:00+00:00",
        }
        record = record_from_dict(data)
        assert record.duration_s == 240
        again = record_from_dict(record_to_dict(record))
        assert again == record

    @pytest.mark.parametrize(
        ("patch", "message"),
        [
            ({"status": "ok"}, "status must be success or failed"),
            ({"kind": "hotfix"}, "kind must be deploy or rollback"),
            ({"started_at": "yesterday"}, "started_at is not an ISO timestamp"),
            ({"colour": "red"}, "unknown field(s): colour"),
            ({"version": ""}, "missing field(s): version"),
        ],
    )
    def test_bad_fields_are_named(self, patch, message):
        data = {"environment": "prod", "service": "api", "version": "1", "status": "success"}
        with pytest.raises(ValueError) as err:
            record_from_dict({**data, **patch})
        assert message in str(err.value)
