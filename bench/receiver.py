"""The receiver side by side with the floor of its own stack: `agentgate serve` and the minimal Flask +
gunicorn receiver of `bench/minimal_receiver.py` (verify, deduplicate, enqueue an RQ job), each with 2
web processes, loaded in turn by wrk in one run.

    python -m bench.receiver [--seconds S] [--repeats R] [--connections C] [--json]

Every request is a signed ~23 KB `pull_request.opened` delivery (GitHub's example payload, its body
padded) about a pull request no other request names, with a new delivery id: each one is a delivery
agentgate must accept, deduplicate, audit and queue an evaluation for (nothing coalesces). The two
servers take turns, R times, in rotated order; Redis is emptied before each turn.

Prints deliveries/s and latency percentiles (wrk, closed loop: C connections, so each request waits
about C / throughput) for each, their ratio, one sender's latency (300 deliveries one at a time: the
answer time without queueing), and the Redis work per delivery: commands (INFO commandstats, counting
those a script runs) and round trips (MONITOR over a few sequential deliveries; a MULTI...EXEC
pipeline is one round trip).

Redis: a private `redis-server` on a free port when one is installed (so the counts are this
benchmark's alone), else `AGENTGATE_E2E_REDIS_URL` (default database 14), which is flushed.
Needs `wrk` (`apt-get install -y wrk`)."""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import redis
import requests

from tests.conftest import SECRET, github_fixture, sign
from tests.e2e import E2E_REDIS_URL, agentgate_bin, free_port

PAYLOAD_BYTES = 23 * 1024
WEB_PROCESSES = 2
WRK_THREADS = 2
# A request names a pull request no other request of its turn does: the pool holds more than a turn
# can send at this rate, per wrk thread.
MAX_RATE = 8000

WRK_SCRIPT = r"""
-- Each wrk thread reads its own file of (signature line, body line) records: every request is a
-- distinct, correctly signed delivery with a new delivery id.
local threads = 0
function setup(thread)
  thread:set("tid", threads)
  threads = threads + 1
end
local file, sent, wrapped = nil, 0, 0
function init(args)
  file = assert(io.open(args[1] .. tid .. ".txt", "rb"))
end
function request()
  local signature = file:read("*l")
  if signature == nil then
    file:seek("set", 0)
    wrapped = wrapped + 1
    signature = file:read("*l")
  end
  local body = file:read("*l")
  sent = sent + 1
  return wrk.format("POST", "/webhooks/github", {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "pull_request",
    ["X-GitHub-Delivery"] = string.format("bench-%d-%d-%s", tid, sent, RUN),
    ["X-Hub-Signature-256"] = signature,
  }, body)
end
function done(summary, latency, requests)
  -- a wrapped pool would send repeated pull requests: say so, the figures would flatter agentgate
  io.write(string.format("wrapped %d\n", wrapped))
end
"""


def padded_payload(number: int, size: int = PAYLOAD_BYTES) -> dict[str, Any]:
    """GitHub's example `pull_request.opened` delivery about PR `number`, its description padded so the
    body is `size` bytes (real deliveries of busy repositories are this large)."""
    payload = copy.deepcopy(github_fixture("pull_request.opened.1"))
    payload["number"] = number
    payload["pull_request"]["number"] = number
    payload["installation"] = {"id": 42}
    payload["pull_request"]["body"] = ""
    room = size - len(json.dumps(payload).encode())
    payload["pull_request"]["body"] = ("Implements the change the issue asks for. " * (room // 43 + 1))[:max(room, 0)]
    return payload


def write_requests(directory: Path, per_thread: int, threads: int = WRK_THREADS) -> str:
    """One file per wrk thread of `per_thread` distinct signed deliveries; returns the files' prefix."""
    number = 1
    for tid in range(threads):
        with open(directory / f"requests-{tid}.txt", "wb") as out:
            for _ in range(per_thread):
                body = json.dumps(padded_payload(number)).encode()
                number += 1
                out.write(sign(body).encode() + b"\n" + body + b"\n")
    return str(directory / "requests-")


@dataclass
class Turn:
    server: str
    deliveries_per_second: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    errors: int
    wrapped: int
    redis_commands_per_delivery: float


@contextmanager
def private_redis() -> Iterator[str]:
    """A Redis of this benchmark's own, so command counts are only its own; else the E2E database."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield E2E_REDIS_URL
        return
    port = free_port()
    proc = subprocess.Popen([binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait(lambda: redis.Redis.from_url(url).ping(), "redis-server")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _wait(ready: Any, what: str, seconds: float = 30) -> None:
    # Waiting for a process to start listening is the one wait here, bounded.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except (redis.RedisError, requests.RequestException):
            pass
        time.sleep(0.05)
    raise SystemExit(f"{what} did not start in {seconds} s")


@contextmanager
def serving(server: str, redis_url: str, log: Path) -> Iterator[str]:
    """`agentgate serve` or the minimal receiver, each with WEB_PROCESSES processes; yields its URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTGATE_")}
    if server == "agentgate":
        env |= {"AGENTGATE_REDIS_URL": redis_url, "AGENTGATE_GITHUB_WEBHOOK_SECRET": SECRET,
                "AGENTGATE_WEB_WORKERS": str(WEB_PROCESSES), "AGENTGATE_ACCESS_LOG": "0"}
        command = [agentgate_bin(), "serve", "--port", str(port)]
        ready = f"http://127.0.0.1:{port}/readyz"
    else:
        env |= {"MINIMAL_REDIS_URL": redis_url, "MINIMAL_SECRET": SECRET}
        # gthread: of gunicorn's own workers the fastest here (sync closes every connection), see docs/production.md
        command = [str(Path(sys.executable).parent / "gunicorn"), "-w", str(WEB_PROCESSES), "-k", "gthread",
                   "--threads", "8", "-b", f"127.0.0.1:{port}", "bench.minimal_receiver:app"]
        ready = f"http://127.0.0.1:{port}/webhooks/github"
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                cwd=Path(__file__).resolve().parent.parent)
    try:
        _wait(lambda: proc.poll() is None and requests.request(
            "GET" if server == "agentgate" else "POST", ready, timeout=1).status_code < 500, server)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def _commands(conn: redis.Redis) -> int:
    return sum(int(v["calls"]) for v in conn.info("commandstats").values())  # type: ignore[union-attr]


def run_wrk(server: str, url: str, prefix: str, script: Path, seconds: int, connections: int,
            conn: redis.Redis) -> Turn:
    before = _commands(conn)
    out = subprocess.run(["wrk", "-t", str(WRK_THREADS), "-c", str(connections), "-d", f"{seconds}s", "--latency",
                          "-s", str(script), f"{url}/webhooks/github", "--", prefix],
                         capture_output=True, text=True, timeout=seconds + 60, check=True).stdout
    commands = _commands(conn) - before

    def number(pattern: str, default: float = 0.0) -> float:
        found = re.search(pattern, out)
        return float(found.group(1)) if found else default

    def ms(label: str) -> float:
        found = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if not found:
            return float("nan")
        return float(found.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found.group(2)]

    requests_done = int(number(r"(\d+) requests in"))
    non_2xx = int(number(r"Non-2xx or 3xx responses: (\d+)"))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    ok = max(requests_done - non_2xx, 1)
    return Turn(server, number(r"Requests/sec:\s+([\d.]+)"), ms("50"), ms("90"), ms("99"), requests_done, non_2xx,
                errors, int(sum(int(n) for n in re.findall(r"wrapped (\d+)", out))), commands / ok)


def round_trips(url: str, conn: redis.Redis, deliveries: int = 20) -> tuple[float, float]:
    """Round trips and commands per delivery, from MONITOR over a few sequential deliveries (after a
    few unmeasured ones: each web process's first delivery also loads the script)."""
    for n in range(8):
        _post(url, 800_000 + n)
    monitor = subprocess.Popen(["redis-cli", "-u", conn_url(conn), "MONITOR"], stdout=subprocess.PIPE, text=True)
    try:
        assert monitor.stdout is not None  # noqa: S101
        monitor.stdout.readline()  # "OK": the monitor is attached
        for n in range(deliveries):
            _post(url, 900_000 + n)
        conn.execute_command("ECHO", "bench-monitor-end")
        lines = []
        for line in monitor.stdout:
            if "bench-monitor-end" in line:
                break
            lines.append(line)
    finally:
        monitor.terminate()
        monitor.wait(timeout=10)
    trips = commands = 0
    in_multi = False
    for line in lines:
        found = re.match(r"^[\d.]+ \[\d+ ([^\]]+)\] \"(\w+)\"", line)
        if not found:
            continue
        source, command = found.group(1), found.group(2).upper()
        commands += 1
        if source == "lua":
            continue  # run by a script: no round trip of its own
        if command == "MULTI":
            in_multi = True
        elif command == "EXEC":
            in_multi = False
            trips += 1
        elif not in_multi:
            trips += 1
    return trips / deliveries, commands / deliveries


def _post(url: str, number: int, session: Any = requests) -> float:
    """One signed delivery; returns how long its answer took, in ms."""
    body = json.dumps(padded_payload(number)).encode()
    headers = {"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": str(uuid.uuid4()),
               "X-Hub-Signature-256": sign(body), "Content-Type": "application/json"}
    started = time.perf_counter()
    resp = session.post(f"{url}/webhooks/github", data=body, timeout=10, headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    if resp.status_code != 202:
        raise SystemExit(f"delivery refused: {resp.status_code} {resp.text}")
    return elapsed


def sequential(url: str, deliveries: int = 300) -> tuple[float, float]:
    """p50 and p99 of one sender's deliveries, one at a time on a kept-alive connection: the receiver's
    own answer time, without the queueing of a loaded machine."""
    session = requests.Session()
    times = [_post(url, 700_000 + n, session) for n in range(deliveries)]
    cuts = statistics.quantiles(times, n=100)
    return cuts[49], cuts[98]


def conn_url(conn: redis.Redis) -> str:
    kwargs = conn.connection_pool.connection_kwargs
    return f"redis://{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.receiver", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", choices=["agentgate", "minimal"], help="load one server only (no ratio)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("bench.receiver needs wrk: apt-get install -y wrk")
    servers = [args.only] if args.only else ["agentgate", "minimal"]
    turns: list[Turn] = []
    trips: dict[str, tuple[float, float]] = {}
    alone: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory() as tmp_name, private_redis() as redis_url:
        tmp = Path(tmp_name)
        prefix = write_requests(tmp, MAX_RATE * args.seconds // WRK_THREADS)
        script = tmp / "deliveries.lua"
        script.write_text(f'RUN = "{uuid.uuid4().hex[:8]}"\n' + WRK_SCRIPT)
        conn = redis.Redis.from_url(redis_url)
        for repeat in range(args.repeats):
            for server in servers[repeat % 2:] + servers[:repeat % 2]:  # rotated: neither always goes first
                conn.flushdb()
                with serving(server, redis_url, tmp / f"{server}-{repeat}.log") as url:
                    if server not in trips:
                        trips[server] = round_trips(url, conn)
                        alone[server] = sequential(url)
                        conn.flushdb()
                    turns.append(run_wrk(server, url, prefix, script, args.seconds, args.connections, conn))
        conn.flushdb()
    result = summarise(turns, trips, alone)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        report(result, args)
    return result


def summarise(turns: list[Turn], trips: dict[str, tuple[float, float]],
              alone: dict[str, tuple[float, float]]) -> dict[str, Any]:
    by_server: dict[str, Any] = {}
    for server in trips:
        mine = [t for t in turns if t.server == server]
        by_server[server] = {
            "deliveries_per_second": statistics.median(t.deliveries_per_second for t in mine),
            "p50_ms": statistics.median(t.p50_ms for t in mine),
            "p90_ms": statistics.median(t.p90_ms for t in mine),
            "p99_ms": statistics.median(t.p99_ms for t in mine),
            "redis_commands_per_delivery": statistics.median(t.redis_commands_per_delivery for t in mine),
            "redis_round_trips_per_delivery": trips[server][0],
            "redis_commands_per_delivery_sequential": trips[server][1],
            "one_sender_p50_ms": alone[server][0],
            "one_sender_p99_ms": alone[server][1],
            "turns": [asdict(t) for t in mine],
        }
    ratio = (by_server["agentgate"]["deliveries_per_second"] / by_server["minimal"]["deliveries_per_second"]
             if len(by_server) == 2 else None)
    return {"servers": by_server, "ratio": ratio}


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    print(f"receiver: signed {PAYLOAD_BYTES // 1024} KB pull_request deliveries, wrk {args.connections} connections, "
          f"{WEB_PROCESSES} web processes each, {args.repeats} x {args.seconds} s turns (medians):")
    for server, s in result["servers"].items():
        print(f"  {server:9s} {s['deliveries_per_second']:7,.0f} deliveries/s  p50 {s['p50_ms']:5.1f} ms  "
              f"p90 {s['p90_ms']:5.1f} ms  p99 {s['p99_ms']:5.1f} ms  Redis per delivery: "
              f"{s['redis_round_trips_per_delivery']:.1f} round trip(s), "
              f"{s['redis_commands_per_delivery']:.1f} commands")
        print(f"            one sender at a time: p50 {s['one_sender_p50_ms']:.1f} ms, "
              f"p99 {s['one_sender_p99_ms']:.1f} ms")
        for t in s["turns"]:
            flags = (f"  non-2xx {t['non_2xx']}" if t["non_2xx"] else "") + (f"  socket errors {t['errors']}"
                                                                             if t["errors"] else "")
            flags += "  POOL WRAPPED: repeated PRs" if t["wrapped"] else ""
            print(f"      turn: {t['deliveries_per_second']:7,.0f}/s  p50 {t['p50_ms']:5.1f}  p99 {t['p99_ms']:5.1f}"
                  + flags)
    if result["ratio"] is not None:
        print(f"  ratio agentgate / minimal: {result['ratio']:.2f}x")


if __name__ == "__main__":
    main()
