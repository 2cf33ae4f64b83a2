"""A flood of webhooks for one service: 1,000 signed deliveries from 20 concurrent
clients (50 distinct delivery ids, each redelivered) plus 200 badly signed ones.

Checks: exactly one rollback reaches the AWS API (UpdateService), zero 5xx, every bad
one 401. Reports the sustained request rate, next to a bare FastAPI endpoint that reads
the same body, served the same way and measured in the same run (goal: ≥ 70 %).
The receiver runs as ``rollback serve --mode embedded`` in its own process; everything
is on 127.0.0.1 and stops by itself.

    python bench/webhook_flood.py [--deliveries 1000] [--clients 20]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from webhook_latency import (  # noqa: E402
    BIN,
    Recorder,
    failure_body,
    prefect_env,
    processes,
    seed,
    spawn,
    start_prefect_server,
    wait_for,
    write_config,
)

BARE = """
import sys, uvicorn
from fastapi import FastAPI, Request
app = FastAPI()
@app.post("/webhooks/github")
async def bare(request: Request):
    await request.body()
    return {"status": "ok"}
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


async def flood(
    url: str, requests: list[tuple[bytes, dict[str, str]]], clients: int
) -> tuple[float, list[int]]:
    import httpx

    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(requests)):
        queue.put_nowait(i)
    statuses = [0] * len(requests)

    async def client() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                body, headers = requests[i]
                resp = await http.post("/webhooks/github", content=body, headers=headers)
                statuses[i] = resp.status_code

    start = time.monotonic()
    await asyncio.gather(*(client() for _ in range(clients)))
    return time.monotonic() - start, statuses


def build_requests(
    secret: str, deliveries: int, distinct: int, bad: int
) -> list[tuple[bytes, dict[str, str]]]:
    from deployments.signatures import github_signature

    body = failure_body()
    good_sig = github_signature(secret, body)
    wrong_sig = github_signature(os.urandom(24).hex(), body)
    ids = [f"flood-{time.time_ns()}-{n}" for n in range(distinct)]
    out = []
    for n in range(deliveries):
        headers = {
            "X-GitHub-Event": "workflow_run",
            "X-GitHub-Delivery": ids[n % distinct],
            "X-Hub-Signature-256": good_sig,
            "Content-Type": "application/json",
        }
        out.append((body, headers))
    for n in range(bad):
        headers = {
            "X-GitHub-Event": "workflow_run",
            "X-GitHub-Delivery": f"bad-{n}",
            "X-Hub-Signature-256": wrong_sig if n % 2 else "",
            "Content-Type": "application/json",
        }
        out.append((body, headers))
    random.Random(7).shuffle(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=1000)
    parser.add_argument("--distinct", type=int, default=50)
    parser.add_argument("--bad", type=int, default=200)
    parser.add_argument("--clients", type=int, default=20)
    args = parser.parse_args()
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    )
    import httpx

    from devstack import sandbox
    from devstack.sandbox import free_port
    from rollback.config import load_config
    from rollback.runtime import Runtime

    secret = os.urandom(24).hex()
    requests = build_requests(secret, args.deliveries, args.distinct, args.bad)
    bad_index = {
        i for i, (_, h) in enumerate(requests) if h["X-GitHub-Delivery"].startswith("bad-")
    }
    with tempfile.TemporaryDirectory() as tmp_name, processes() as procs:
        tmp = Path(tmp_name)
        api = start_prefect_server(procs, tmp)
        with sandbox.moto_server() as moto:
            recorder = Recorder(moto)
            os.environ["AWS_ENDPOINT_URL"] = recorder.url
            path = write_config(tmp / "flood.yaml", "embedded", cooldown_s=900)
            seed(path)
            env = prefect_env(tmp) | {
                "PREFECT_API_URL": api,
                "AWS_ENDPOINT_URL": recorder.url,
                "BENCH_GITHUB_SECRET": secret,
            }
            # the bare endpoint first, then the receiver, each alone on the machine
            bare_port = free_port()
            bare = spawn(procs, [sys.executable, "-c", BARE, str(bare_port)], env, tmp / "bare.log")
            bare_url = f"http://127.0.0.1:{bare_port}"
            wait_for(
                lambda: httpx.post(bare_url + "/webhooks/github", content=b"{}").status_code == 200,
                30,
                "bare",
            )
            bare_s, bare_status = asyncio.run(flood(bare_url, requests, args.clients))
            bare.terminate()
            bare.wait(10)
            port = free_port()
            cmd = [
                str(BIN / "rollback"),
                "serve",
                "--config",
                str(path),
                "--port",
                str(port),
                "--mode",
                "embedded",
            ]
            spawn(procs, cmd, env, tmp / "receiver.log")
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: httpx.get(url + "/healthz").status_code == 200, 60, "receiver")
            ours_s, statuses = asyncio.run(flood(url, requests, args.clients))
            rt = Runtime(load_config(path))
            wait_for(lambda: not rt.locks.holder("staging", "api"), 60, "the rollback to end")
            time.sleep(1)
            # the same flood again, once the rollback is over: the steady-state rate
            again_s, again = asyncio.run(flood(url, requests, args.clients))
            statuses += again
            updates = len(recorder.updates)
            recorder.close()
            logs = (tmp / "receiver.log").read_text()
    report(
        args,
        requests,
        bad_index,
        statuses,
        (ours_s, again_s),
        bare_s,
        bare_status,
        updates,
        secret in logs,
    )


def report(
    args: Any,
    requests: list[Any],
    bad_index: set[int],
    statuses: list[int],
    times: tuple[float, float],
    bare_s: float,
    bare_status: list[int],
    updates: int,
    secret_logged: bool,
) -> None:
    n = len(requests)
    bad_all = bad_index | {i + n for i in bad_index}
    five = sum(s >= 500 for s in statuses)
    bad_401 = sum(statuses[i] == 401 for i in bad_all)
    good = [s for i, s in enumerate(statuses) if i not in bad_all]
    during, after = (n / t for t in times)
    bare_rate = n / bare_s
    print(
        f"flood: {args.deliveries} signed deliveries ({args.distinct} distinct ids) + "
        f"{args.bad} bad signatures, {args.clients} concurrent clients; sent twice "
        "(during the rollback, then after it)"
    )
    print(f"  rollbacks reaching UpdateService: {updates}   (goal: exactly 1)")
    print(f"  5xx answers: {five}   (goal: 0)")
    print(f"  bad signatures answered 401: {bad_401}/{len(bad_all)}")
    codes = {c: good.count(c) for c in sorted(set(good))}
    print(f"  signed deliveries by status: {codes}")
    print(f"  bare FastAPI endpoint (same body): {bare_rate:6.0f} req/s")
    print(
        f"  receiver while the rollback runs in-process: {during:6.0f} req/s "
        f"({during / bare_rate:.0%} of bare)"
    )
    print(
        f"  receiver, sustained (after it):             {after:6.0f} req/s "
        f"({after / bare_rate:.0%} of bare; goal ≥ 70%)"
    )
    print(f"  secret in receiver log: {secret_logged}")
    ok = updates == 1 and five == 0 and bad_401 == len(bad_all) and not secret_logged
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
