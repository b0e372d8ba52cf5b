"""End-to-end throughput and memory: `agentgate serve` (2 web processes) and 1, 2 and 4 `agentgate worker`
processes against the fake GitHub and a real Redis, then a burst of deliveries about few PRs.

    python -m bench.throughput [N]

1. Verdicts per second: N agent pull requests are delivered while no worker runs; then W workers
   (burst mode) drain the queue, for W = 1, 2, 4. Every PR must end with an `agentgate` status.
2. A burst: 20 deliveries about each of 50 PRs (opened, labels, comments, synchronize) sent by 32
   concurrent connections while 2 workers run; counts PRs lost (no final status, or a final status
   that is not the verdict of their last state), evaluations per PR and API requests per PR.
3. Peak memory (VmHWM) of the web and worker processes.

Needs Redis on 127.0.0.1:6379 (the E2E database, default 14, is flushed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import redis
import requests

from tests.conftest import sign
from tests.e2e import APP_ID, E2E_REDIS_URL, INSTALLATION, REPO, agentgate_bin, pr_payload, running_agentgate
from tests.fakegithub import FakeState, running_fake_github
from tests.keys import app_key_pair

AGENT = "copilot-swe-agent[bot]"


def _peak_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _web_peak_kib(server_pid: int) -> int:
    """The largest peak RSS among the web server's processes (the gunicorn arbiter and its workers)."""
    pids = [server_pid]
    for child in Path("/proc").iterdir():
        if child.name.isdigit():
            try:
                if f"PPid:\t{server_pid}" in (child / "status").read_text():
                    pids.append(int(child.name))
            except OSError:
                continue
    return max(_peak_kib(p) for p in pids)


def _post(session: requests.Session, url: str, event: str, payload: dict[str, Any]) -> int:
    body = json.dumps(payload).encode()
    return session.post(url, data=body, timeout=30, headers={
        "X-GitHub-Event": event, "X-GitHub-Delivery": str(uuid.uuid4()), "X-Hub-Signature-256": sign(body),
        "Content-Type": "application/json"}).status_code


def _start_workers(env: dict[str, str], count: int) -> list[subprocess.Popen[bytes]]:
    """Workers running (not in burst mode), once each has registered with RQ: startup is not measured."""
    conn = redis.Redis.from_url(E2E_REDIS_URL)
    before = conn.scard("rq:workers")
    procs = [subprocess.Popen([agentgate_bin(), "worker"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for _ in range(count)]
    deadline = time.monotonic() + 60
    while conn.scard("rq:workers") < before + count and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for processes to start, not synchronising a test
    return procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait(timeout=30)


def main(n: int = 120) -> dict[str, Any]:
    private, public = app_key_pair()
    state = FakeState(app_id=APP_ID, public_key_pem=public)
    state.add_installation(INSTALLATION, "acme", [REPO])
    state.repo(REPO).branches["main"] = "b" * 40
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, running_fake_github(state) as fake, \
            running_agentgate(fake, private, Path(tmp)) as gate:
        url = f"{gate.url}/webhooks/github"
        number = 1000
        for workers in (1, 2, 4):
            heads, payloads = [], []
            for _ in range(n):
                number += 1
                head = f"{number:040x}"
                pr = state.add_pull(REPO, number, user=AGENT, head_sha=head, base_ref="main")
                state.add_file(REPO, number, f"src/module_{number}.py")
                payloads.append(pr_payload(pr))
                heads.append(head)
            procs = _start_workers(gate.env, workers)
            try:
                started = time.perf_counter()
                with ThreadPoolExecutor(8) as pool:
                    assert set(pool.map(lambda p: _post(requests.Session(), url, "pull_request", p), payloads)) == {202}
                deadline = time.monotonic() + 300
                while not all(gate.statuses(h) for h in heads) and time.monotonic() < deadline:
                    time.sleep(0.01)  # benchmark polling
                seconds = time.perf_counter() - started
                figures["worker_peak_mib"] = round(max(_peak_kib(p.pid) for p in procs) / 1024, 1)
            finally:
                _stop(procs)
            figures[f"verdicts_per_s_{workers}_workers"] = round(n / seconds, 1)
            figures[f"missing_{workers}_workers"] = sum(not gate.statuses(h) for h in heads)

        # The burst: 50 PRs, 20 deliveries each, 32 connections, 2 workers running meanwhile.
        redis.Redis.from_url(E2E_REDIS_URL).delete("agentgate:metrics:counters")
        prs = []
        for _ in range(50):
            number += 1
            pr = state.add_pull(REPO, number, user=AGENT, head_sha=f"{number:040x}", base_ref="main")
            state.add_file(REPO, number, "src/app.py")
            prs.append(pr)
        deliveries: list[tuple[str, dict[str, Any]]] = []
        for step in range(20):
            for pr in prs:
                payload = pr_payload(pr, action="opened" if step == 0 else ("labeled" if step % 2 else "edited"))
                if step % 2:
                    payload["label"] = {"id": step, "name": f"note-{step}", "color": "ededed", "default": False}
                deliveries.append(("pull_request", payload))
        calls_before = len(state.calls)
        workers = [subprocess.Popen([agentgate_bin(), "worker"], env=gate.env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for _ in range(2)]
        try:
            started = time.perf_counter()
            with ThreadPoolExecutor(32) as pool:
                codes = list(pool.map(lambda d: _post(requests.Session(), url, *d), deliveries))
            sent = time.perf_counter() - started
            deadline = time.monotonic() + 120
            conn = redis.Redis.from_url(E2E_REDIS_URL)
            while time.monotonic() < deadline:  # benchmark polling for the queue to drain, not a test
                if conn.llen("rq:queue:agentgate") == 0 and not any(
                        conn.zcard(f"rq:{name}:agentgate") for name in ("wip", "scheduled")) and all(
                        gate.statuses(pr["head"]["sha"]) for pr in prs):
                    break
                time.sleep(0.2)
            time.sleep(3)  # let evaluations scheduled at a settle window's end run
            figures["worker_peak_mib_running"] = round(max(_peak_kib(w.pid) for w in workers) / 1024, 1)
            figures["web_peak_mib"] = round(_web_peak_kib(int(_serve_pid(gate))) / 1024, 1)
        finally:
            for w in workers:
                w.terminate()
            for w in workers:
                w.wait(timeout=30)
        lost = [pr["number"] for pr in prs if not gate.statuses(pr["head"]["sha"])
                or gate.statuses(pr["head"]["sha"])[-1]["state"] != "pending"]
        evaluations = [len(state.calls_matching("GET", rf"/repos/{REPO}/pulls/{pr['number']}/reviews$")) for pr in prs]
        figures.update(burst_deliveries=len(deliveries), burst_accepted=sum(c in (200, 202) for c in codes),
                       burst_send_seconds=round(sent, 2), burst_lost=len(lost),
                       burst_evaluations_per_pr=round(sum(evaluations) / len(prs), 1),
                       burst_requests_per_pr=round((len(state.calls) - calls_before) / len(prs), 1))
    return figures


def _serve_pid(gate: Any) -> int:
    """The `agentgate serve` process listening for this gate (found by its port)."""
    port = gate.url.rsplit(":", 1)[1]
    out = subprocess.run(["pgrep", "-f", f"agentgate serve --port {port}"], capture_output=True, text=True)
    return int(out.stdout.split()[0]) if out.stdout.split() else os.getpid()


if __name__ == "__main__":
    result = main(int(sys.argv[1]) if len(sys.argv) > 1 else 120)
    for name, value in result.items():
        print(f"{name:32} {value}")
