"""Text from outside (reason, requested_by, versions, ids, service and alarm names) is
data: escaped wherever it is shown (Slack mrkdwn, markdown artifacts and reports, logs),
and never forms a link, a mention or an image."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from markdown_it import MarkdownIt

from reports.render import summary_markdown
from rollback.models import CheckResult, RollbackOutcome
from rollback.notifiers.message import markdown_report, slack_payload
from rollback.text import log_safe, markdown_escape, slack_escape
from tests.conftest import cli_env
from tests.fakes.http_sink import http_sink
from tests.functional.world import make_world
from tests.unit.reports.builders import deploy, report, rollback

ROLLBACK = str(Path(sys.executable).with_name("rollback"))

HOSTILE = [
    "<!channel>",
    "<!here|here>",
    "<@U123ADMIN>",
    "<https://evil.example/approve|Approve>",
    "[Approve](https://evil.example/approve)",
    "![x](https://evil.example/b.png)",
    '<img src="https://evil.example/b.png">',
    "<script>alert(1)</script>",
    "a | b | c",
    "`code` and ``more``",
    "line one\n# fake heading\n- [Approve](https://evil.example)",
    "&lt;!channel&gt;",  # already-escaped text must not turn back into a mention
    "https://evil.example/bare and www.evil.example",
]
EVIL = "evil.example"


def _html(markdown: str) -> str:
    """How a markdown viewer that allows raw HTML shows it (the strictest case)."""
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(markdown)


def _assert_inert_markdown(markdown: str) -> None:
    html = re.sub(r'<a href="http://(127\.0\.0\.1|localhost)[:/][^"]*">', "", _html(markdown))
    assert "<a " not in html, html
    assert "<img" not in html, html
    assert "<script" not in html, html
    # A bare URL from outside is defanged, so no autolinking renderer (GFM, Slack) links it.
    assert "https://evil" not in markdown and "www.evil" not in markdown, markdown


def _assert_inert_slack(text: str, allowed_links: tuple[str, ...] = ()) -> None:
    # In Slack mrkdwn only "<...>" forms links and mentions; "&" starts an entity.
    for link in allowed_links:
        text = text.replace(link, "")
    text = re.sub(r"<http://(127\.0\.0\.1|localhost)[:/][^<>|]*\|Flow run>", "", text)
    assert "<" not in text and ">" not in text, text
    assert "https://evil" not in text and "www.evil" not in text, text


def _outcome(text: str) -> RollbackOutcome:
    return RollbackOutcome(
        status="refused",
        environment="prod",
        service=f"api{text}",
        audit_id=f"id{text}",
        from_version=f"api:4{text}",
        to_version=f"api:3{text}",
        checks=[CheckResult("target_exists", False, f"no version {text}")],
        reason=f"refused: {text}",
        trigger="webhook",
        requested_by=f"mallory{text}",
        request_reason=text,
        timeline=[("2026-01-01T00:00:00Z", f"requested by {text}")],
        headline=f"Rollback refused, nothing changed: prod/api{text}",
    )


# -- the escaping functions ---------------------------------------------------------------
def test_slack_escape_escapes_the_three_control_characters() -> None:
    assert slack_escape("a & b < c > d") == "a &amp; b &lt; c &gt; d"
    assert slack_escape("<!channel>") == "&lt;!channel&gt;"
    assert slack_escape("&lt;!channel&gt;") == "&amp;lt;!channel&amp;gt;"  # not decoded back


def test_markdown_escape_keeps_plain_identifiers_readable() -> None:
    for plain in ("api:3", "prod", "v1.2.3", "arn:aws:ecs:us-east-1:1:service/c/api", "a-b_c"):
        assert markdown_escape(plain).replace("\\", "") == plain
    assert markdown_escape("api:3") == "api:3"


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_escape_is_inert_inline_and_in_a_table_cell(text: str) -> None:
    escaped = markdown_escape(text)
    assert "\n" not in escaped and "|" not in escaped.replace("\\|", "")
    _assert_inert_markdown(f"before {escaped} after")
    table = f"| a | b |\n|---|---|\n| {escaped} | x |\n"
    html = _html(table)
    _assert_inert_markdown(table)
    assert html.count("<td>") == 2, html  # the cell did not split or end the table


@pytest.mark.parametrize("text", HOSTILE)
def test_slack_escape_is_inert(text: str) -> None:
    _assert_inert_slack(slack_escape(text))


def test_log_safe_is_one_bounded_line() -> None:
    assert log_safe("plain id-1") == "plain id-1"
    forged = "x\n2026-01-01 INFO approved by admin\r\x1b[2J\u2028tail"
    safe = log_safe(forged)
    assert "\n" not in safe and "\r" not in safe and "\x1b" not in safe and "\u2028" not in safe
    assert "\\n" in safe and "approved by admin" in safe
    assert len(log_safe("a" * 10_000)) <= 501


# -- where the text is shown -------------------------------------------------------------
@pytest.mark.parametrize("text", HOSTILE)
def test_slack_message_shows_outside_text_escaped(text: str) -> None:
    run_url = "http://127.0.0.1:4200/runs/flow-run/1"
    payload = slack_payload(_outcome(text), "#deployments", run_url)
    _assert_inert_slack(payload["text"], allowed_links=(f"<{run_url}|Flow run>",))
    assert payload.get("unfurl_links") is False and payload.get("unfurl_media") is False


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_artifact_shows_outside_text_escaped(text: str) -> None:
    markdown = markdown_report(_outcome(text), None)
    _assert_inert_markdown(markdown)
    html = _html(markdown)
    assert html.count("<h1>") == 1 and html.count("<h2>") == 2, html  # no injected heading
    assert html.count("<tr>") == 2, html  # header + the one check row


def test_markdown_artifact_links_only_the_configured_flow_run_url() -> None:
    markdown = markdown_report(_outcome("[Approve](https://evil.example)"), "http://ui/run/1")
    html = _html(markdown)
    assert html.count("<a ") == 1 and '<a href="http://ui/run/1">' in html


@pytest.mark.parametrize("text", HOSTILE)
def test_report_summary_shows_outside_text_escaped(text: str) -> None:
    # GIVEN a history whose service and version names came from outside
    svc = f"api{text}"
    records = [
        deploy(svc, f"v1{text}", -50),
        deploy(svc, f"v2{text}", -10),
        rollback(svc, f"v2{text}", f"v1{text}", -8, trigger="alarm"),
        rollback(svc, f"v2{text}", f"v1{text}", -7, trigger="alarm"),
    ]
    # WHEN the summary is rendered (the repeated-rollback rule names the service)
    markdown = summary_markdown(report(records), None)
    # THEN nothing from outside renders as a link, image or HTML, and tables hold
    _assert_inert_markdown(markdown)
    assert "Rule: 2 or more automatic rollbacks" in markdown


# -- end to end: the CLI run, its Slack message and its markdown artifact ----------------
def _artifact_markdown(flow_run_id: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(flow_run_id)])
            )
        )
    return "\n".join(str(a.data) for a in artifacts if a.type == "markdown")


def test_cli_run_escapes_reason_and_user_in_slack_and_artifact(
    aws: str, tmp_path: Path, prefect_api_url: str
) -> None:
    # GIVEN Slack configured (a local sink) and a hostile reason and requester
    def slack(data: dict[str, Any]) -> None:
        data["notifications"] = {"slack": {"webhook_env": "TEST_SLACK_URL"}}

    config = make_world(tmp_path, edit=slack)
    reason = "<!channel> <https://evil.example/a|Approve> ![x](https://evil.example/b.png)"
    by = '[Approve](https://evil.example/a) <img src="https://evil.example/b.png">'
    with http_sink() as sink:
        env = cli_env(PREFECT_API_URL=prefect_api_url, TEST_SLACK_URL=sink.url + "/hook")
        # WHEN the rollback runs through the CLI
        out = subprocess.run(
            [ROLLBACK, "run", "--config", str(config), "--env", "staging", "--service", "api"]
            + ["--reason", reason, "--by", by, "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # THEN the Slack message shows the text, escaped, with no mention or link from it
    (message,) = sink.requests
    text = message["body"]["text"]
    assert "&lt;!channel&gt;" in text
    _assert_inert_slack(text)
    # AND the markdown artifact shows it escaped too
    markdown = _artifact_markdown(result["flow_run_id"])
    assert "Approve" in markdown
    _assert_inert_markdown(markdown)
