"""The receiver's answer time: signed pull_request deliveries to `agentgate serve` (2 gunicorn processes),
each verified, deduplicated and enqueued in Redis; no worker runs.

    python -m bench.receiver [N]

Needs Redis on 127.0.0.1:6379 (database 14 is flushed). Prints latency percentiles for sequential
deliveries and throughput with 8 concurrent senders."""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from tests.conftest import sign
from tests.e2e import APP_ID, INSTALLATION, REPO, pr_payload, running_agentgate
from tests.fakegithub import FakeState, running_fake_github
from tests.keys import app_key_pair


def main(n: int = 500) -> dict[str, float]:
    private, public = app_key_pair()
    state = FakeState(app_id=APP_ID, public_key_pem=public)
    state.add_installation(INSTALLATION, "acme", [REPO])
    pulls = [state.add_pull(REPO, 1000 + i, user="copilot-swe-agent[bot]") for i in range(n)]
    bodies = [requests.compat.json.dumps(pr_payload(pr)).encode() for pr in pulls]
    with tempfile.TemporaryDirectory() as tmp, running_fake_github(state) as fake, \
            running_agentgate(fake, private, Path(tmp)) as gate:
        url = f"{gate.url}/webhooks/github"
        session = requests.Session()

        def send(body: bytes, s: requests.Session = session) -> float:
            started = time.perf_counter()
            resp = s.post(url, data=body, timeout=10, headers={
                "X-GitHub-Event": "pull_request", "X-GitHub-Delivery": str(uuid.uuid4()),
                "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"})
            assert resp.status_code == 202, resp.text  # noqa: S101 - a benchmark of accepted deliveries
            return (time.perf_counter() - started) * 1000

        sequential = [send(body) for body in bodies]
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda b: send(b, requests.Session()), bodies))
        concurrent_rate = len(bodies) / (time.perf_counter() - started)
    cuts = statistics.quantiles(sequential, n=100)
    result = {"p50_ms": cuts[49], "p99_ms": cuts[98], "deliveries_per_second": concurrent_rate}
    print(f"receiver, {n} signed deliveries (payload {len(bodies[0]) // 1024} KB) to agentgate serve:")
    print(f"  sequential: p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms per delivery")
    print(f"  8 concurrent senders: {concurrent_rate:,.0f} deliveries/s")
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
