"""A small fake of the GitHub REST API: just what the GitHub Actions target and the
deployment-status notifier call (deployments and their statuses are recorded too).

Runs ``http.server`` in a thread on 127.0.0.1. Every ``url`` it answers with starts with
its ``base_url`` (PyGithub refuses to follow others). It records workflow dispatches,
commit statuses and the Authorization headers it saw, and serves each dispatched run
as queued → in_progress → completed (``conclusion``) over successive reads.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PREFIX = "/api/v3"


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeGitHub:
    """``conclusion=None`` keeps dispatched runs in progress forever; ``reads_to_complete``
    is how many reads of a run it takes to reach completed; ``hidden_listings`` is how
    many run listings after a dispatch still leave the new run out (GitHub is slow to
    list it)."""

    def __init__(
        self,
        repository: str = "acme/shop",
        workflow: str = "rollback.yml",
        refs: dict[str, str] | None = None,
        deployments: list[dict[str, str]] | None = None,
        conclusion: str | None = "success",
        reads_to_complete: int = 2,
        hidden_listings: int = 1,
    ) -> None:
        self.repository = repository
        self.workflow = workflow
        self.workflow_id = 4242
        self.refs = dict(refs or {})
        self.deployments = list(deployments or [])
        self.conclusion = conclusion
        self.reads_to_complete = reads_to_complete
        self.hidden_listings = hidden_listings
        self.dispatches: list[dict[str, Any]] = []
        self.statuses: list[tuple[str, dict[str, Any]]] = []
        self.deployment_statuses: list[tuple[int, dict[str, Any]]] = []
        self.created_deployments: list[dict[str, Any]] = []
        self.auth_headers: list[str] = []
        self.runs: dict[int, dict[str, Any]] = {}
        self._reads: dict[int, int] = {}
        self._hidden: dict[int, int] = {}
        self._next_run = 900
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.host = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.base_url = self.host + PREFIX
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> FakeGitHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # -- state ---------------------------------------------------------------------------
    @property
    def repo_url(self) -> str:
        return f"{self.base_url}/repos/{self.repository}"

    def add_run(self, event: str, created_at: datetime, title: str = "earlier run") -> int:
        """A run that is already there (not started by a dispatch of the test)."""
        with self._lock:
            return self._new_run(event, created_at, title, status="completed", conclusion="success")

    def _new_run(
        self, event: str, created: datetime, title: str, status: str, conclusion: str | None
    ) -> int:
        self._next_run += 1
        run_id = self._next_run
        self.runs[run_id] = {
            "id": run_id,
            "name": "rollback",
            "display_title": title,
            "event": event,
            "status": status,
            "conclusion": conclusion,
            "created_at": _iso(created),
            "updated_at": _iso(created),
            "run_number": run_id - 900,
            "head_branch": "main",
            "head_sha": "0" * 40,
            "workflow_id": self.workflow_id,
            "url": f"{self.repo_url}/actions/runs/{run_id}",
            "html_url": f"{self.host}/{self.repository}/actions/runs/{run_id}",
        }
        return run_id

    def _dispatch(self, body: dict[str, Any]) -> None:
        with self._lock:
            self.dispatches.append(body)
            title = f"rollback {body.get('inputs', {}).get('audit_id', '')}".strip()
            run_id = self._new_run(
                "workflow_dispatch", datetime.now(UTC), title, status="queued", conclusion=None
            )
            self._hidden[run_id] = self.hidden_listings

    def _read_run(self, run_id: int) -> dict[str, Any] | None:
        with self._lock:
            run = self.runs.get(run_id)
            if run is None or run["status"] == "completed":
                return run
            reads = self._reads[run_id] = self._reads.get(run_id, 0) + 1
            if reads >= self.reads_to_complete and self.conclusion is not None:
                run.update(status="completed", conclusion=self.conclusion)
            else:
                run["status"] = "in_progress"
            return dict(run)

    def _list_runs(self, query: dict[str, list[str]]) -> list[dict[str, Any]]:
        event = query.get("event", [None])[0]
        created = query.get("created", [""])[0]
        since = None
        if created.startswith(">="):
            since = datetime.fromisoformat(created[2:].replace("Z", "+00:00"))
        out = []
        with self._lock:
            for run_id, run in sorted(self.runs.items(), reverse=True):
                if self._hidden.get(run_id, 0) > 0:
                    self._hidden[run_id] -= 1
                    continue
                if event and run["event"] != event:
                    continue
                ts = datetime.fromisoformat(run["created_at"].replace("Z", "+00:00"))
                if since and ts < since:
                    continue
                out.append(dict(run))
        return out

    # -- HTTP ----------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def _send(self, code: int, body: Any = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, method: str) -> None:
                fake.auth_headers.append(self.headers.get("Authorization", ""))
                parts = urlsplit(self.path)
                path = parts.path.removeprefix(PREFIX)
                query = parse_qs(parts.query)
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}") if length else {}
                repo = f"/repos/{fake.repository}"
                if not path.startswith(repo):
                    return self._send(404, {"message": "Not Found"})
                rest = path.removeprefix(repo)
                answer = fake._answer(method, rest, query, body)
                self._send(*answer)

            def do_GET(self) -> None:  # noqa: N802
                self._route("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._route("POST")

        return Handler

    def _workflow(self) -> dict[str, Any]:
        return {
            "id": self.workflow_id,
            "name": "rollback",
            "path": f".github/workflows/{self.workflow}",
            "state": "active",
            "url": f"{self.repo_url}/actions/workflows/{self.workflow_id}",
            "html_url": f"{self.host}/{self.repository}/actions/workflows/{self.workflow}",
        }

    def _answer(
        self, method: str, rest: str, query: dict[str, list[str]], body: dict[str, Any]
    ) -> tuple[int, Any]:
        workflow_names = (self.workflow, str(self.workflow_id))
        if method == "GET" and rest == "":
            owner, name = self.repository.split("/")
            return 200, {
                "id": 1,
                "name": name,
                "full_name": self.repository,
                "owner": {"login": owner},
                "url": self.repo_url,
            }
        m = re.fullmatch(r"/actions/workflows/([^/]+)", rest)
        if m and method == "GET" and m[1] in workflow_names:
            return 200, self._workflow()
        m = re.fullmatch(r"/actions/workflows/([^/]+)/dispatches", rest)
        if m and method == "POST" and m[1] in workflow_names:
            self._dispatch(body)
            return 204, None
        m = re.fullmatch(r"/actions/workflows/([^/]+)/runs", rest)
        if m and method == "GET" and m[1] in workflow_names:
            runs = self._list_runs(query)
            return 200, {"total_count": len(runs), "workflow_runs": runs}
        if (m := re.fullmatch(r"/actions/runs/(\d+)", rest)) and method == "GET":
            run = self._read_run(int(m[1]))
            return (200, run) if run else (404, {"message": "Not Found"})
        if (m := re.fullmatch(r"/commits/([^/]+)", rest)) and method == "GET":
            sha = self.refs.get(m[1]) or (m[1] if m[1] in self.refs.values() else None)
            if sha is None:
                return 422, {"message": f"No commit found for SHA: {m[1]}"}
            return 200, {"sha": sha, "url": f"{self.repo_url}/commits/{sha}", "commit": {}}
        if (m := re.fullmatch(r"/statuses/([0-9a-f]{40})", rest)) and method == "POST":
            self.statuses.append((m[1], body))
            return 201, {"id": len(self.statuses), "url": f"{self.repo_url}/statuses/{m[1]}"} | body
        if rest == "/deployments" and method == "GET":
            env = query.get("environment", [None])[0]
            return 200, [
                {
                    "id": i + 1,
                    "url": f"{self.repo_url}/deployments/{i + 1}",
                    "created_at": _iso(datetime.now(UTC) - timedelta(hours=i)),
                }
                | d
                for i, d in enumerate(self.deployments)
                if env is None or d.get("environment") == env
            ]
        if rest == "/deployments" and method == "POST":
            return 201, self._create_deployment(body)
        m = re.fullmatch(r"/deployments/(\d+)/statuses", rest)
        if m and method == "POST":
            self.deployment_statuses.append((int(m[1]), body))
            status_id = len(self.deployment_statuses)
            return 201, {
                "id": status_id,
                "url": f"{self.repo_url}/deployments/{m[1]}/statuses/{status_id}",
            } | body
        return 404, {"message": f"Not Found: {method} {rest}"}

    def _create_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        """A new deployment, listed first (newest) from now on."""
        with self._lock:
            new_id = 1000 + len(self.created_deployments)
            created = {
                "id": new_id,
                "url": f"{self.repo_url}/deployments/{new_id}",
                "sha": body.get("ref", ""),
                "created_at": _iso(datetime.now(UTC)),
            } | body
            self.created_deployments.append(created)
        return created
