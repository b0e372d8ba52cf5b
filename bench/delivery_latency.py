"""Receipt-to-status latency: a signed pull_request delivery to `agentgate serve`, processed by a
running `agentgate worker`, until the fake GitHub has received the `agentgate` status.

    python -m bench.delivery_latency [N]

Needs Redis on 127.0.0.1:6379 (database 14 is flushed). Prints the median, p90 and max over N
deliveries of distinct pull requests, and the GitHub API calls one evaluation makes."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.e2e import APP_ID, INSTALLATION, REPO, agentgate_bin, pr_payload, review_payload, running_agentgate
from tests.fakegithub import FakeState, running_fake_github
from tests.keys import app_key_pair


def main(n: int = 30) -> dict[str, float]:
    private, public = app_key_pair()
    state = FakeState(app_id=APP_ID, public_key_pem=public)
    state.add_installation(INSTALLATION, "acme", [REPO])
    state.repo(REPO).branches["main"] = "b" * 40  # one base branch head: its policy is read once
    state.set_permission(REPO, "maintainer", "write")
    with tempfile.TemporaryDirectory() as tmp, running_fake_github(state) as fake, \
            running_agentgate(fake, private, Path(tmp)) as gate:
        worker = subprocess.Popen([agentgate_bin(), "worker"], env=gate.env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        try:
            latencies = []
            calls_per_eval = []
            for i in range(n):
                head = f"{i + 1:040x}"
                pr = state.add_pull(REPO, 100 + i, user="copilot-swe-agent[bot]", head_sha=head, base_ref="main")
                state.add_file(REPO, 100 + i, f"src/module_{i}.py")
                before = len(state.calls)
                started = time.perf_counter()
                gate.deliver("pull_request", pr_payload(pr))
                deadline = started + 30
                while not gate.statuses(head):
                    if time.perf_counter() > deadline:
                        raise SystemExit(f"no status for delivery {i} within 30 s")
                    time.sleep(0.001)  # benchmark polling, not test synchronisation
                latencies.append((time.perf_counter() - started) * 1000)
                calls_per_eval.append(len(state.calls) - before)
            # Re-evaluation of known PRs after an approval (the common case: reviews, labels, pushes).
            recalls = []
            for i in range(1, min(n, 11)):
                head = f"{i + 1:040x}"
                state.add_review(REPO, 100 + i, "maintainer", "APPROVED")
                before = len(state.calls)
                gate.deliver("pull_request_review", review_payload(state.repo(REPO).pulls[100 + i],
                                                                   state.repo(REPO).reviews[100 + i][-1]))
                deadline = time.perf_counter() + 30
                while len(gate.statuses(head)) < 2:
                    if time.perf_counter() > deadline:
                        raise SystemExit(f"no second status for PR {100 + i} within 30 s")
                    time.sleep(0.001)
                recalls.append(len(state.calls) - before)
        finally:
            worker.terminate()
            worker.wait(timeout=15)
    # The first delivery pays for worker warm-up and token minting; report it separately.
    steady = latencies[1:]
    result = {
        "first_ms": latencies[0],
        "median_ms": statistics.median(steady),
        "p90_ms": statistics.quantiles(steady, n=10)[-1],
        "max_ms": max(steady),
        "api_calls_first": calls_per_eval[0],
        "api_calls_steady": statistics.median(calls_per_eval[1:]),
        "api_calls_reevaluation": statistics.median(recalls),
    }
    print(f"delivery -> posted status over {n} deliveries (serve + worker processes, fake GitHub, real Redis):")
    print(f"  first {result['first_ms']:.0f} ms (includes minting the installation token)")
    print(f"  median {result['median_ms']:.0f} ms, p90 {result['p90_ms']:.0f} ms, max {result['max_ms']:.0f} ms")
    print(f"  GitHub API calls per evaluation: {result['api_calls_first']} for the first (token mint and policy "
          f"read included), {result['api_calls_steady']:.0f} for each new PR after, "
          f"{result['api_calls_reevaluation']:.0f} to re-evaluate a PR after an approval (permission lookup included)")
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 30)
