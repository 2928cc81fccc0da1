"""python -m bench.observability: what metrics and access logs report under load, and what they cost.

Runs `coupon-ledger serve` (DATABASE_URL, else an embedded PostgreSQL in a temporary folder) several
times, alternating metrics + access log on and off (``COUPON_LEDGER_METRICS``,
``COUPON_LEDGER_ACCESS_LOG``), each run a fresh server: a warm-up, a scrape of /metrics, ``wrk``
(bench/harness.py's: 64 connections, 2 threads, ``bench/wrk_apply.lua``, a fresh Idempotency-Key per
request) posting to /v1/coupons/apply on one coupon for ``--seconds``, and a second scrape. It prints,
per run: the redemptions wrk saw acknowledged (2xx) against the increase of
``coupon_ledger_redemptions_total`` between the scrapes (they agree when the counter grew by at least
wrk's count and by no more than the requests that can be in flight when wrk stops, one per
connection: answered by the server after wrk stopped counting, as bench/harness.py reconciles
acknowledged against recorded uses), and the uses the database recorded; how many lines the server
wrote to stderr and whether every one parsed as JSON (and one access line per request); and the
throughput. Then the mean throughput with observability on and off. It reports; it does not judge.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import httpx
from prometheus_client.parser import text_string_to_metric_families

from api.database import apply_schema
from bench.harness import (
    CLI,
    ROOT,
    Config,
    Measurement,
    Tenant,
    benchmark_server,
    child_env,
    create_ledger_retailer,
    ensure_wrk,
    free_port,
    fresh_database,
    load_average,
    machine_line,
    run_wrk,
)

HOT = "OBSERVED-HOT"


@dataclass(frozen=True)
class Outcome:
    observed: bool
    measured: Measurement
    counter_delta: float | None  # None: metrics off
    recorded_delta: int
    lines: int
    json_lines: int
    access_lines: int
    requests_seen: int  # wrk's requests (2xx and not) plus the scrapes and probes of the run
    cpu_per_request: float  # seconds of CPU (user + system) the serve process spent per request of the run


class Server:
    """`coupon-ledger serve` with stderr (the logs) in a file of its own."""

    def __init__(self, url: str, log_dir: Path, observed: bool, workers: int, what: str = "both") -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = log_dir / f"serve-{self.port}.stderr"
        metrics_on = observed and what in ("both", "metrics")
        access_on = observed and what in ("both", "access")
        env = {
            **child_env(url),
            "COUPON_LEDGER_METRICS": "on" if metrics_on else "off",
            "COUPON_LEDGER_ACCESS_LOG": "on" if access_on else "off",
        }
        env.pop("COUPON_LEDGER_LOG_FORMAT", None)  # stderr is a file: JSON
        with self.stderr_path.open("w") as stderr:
            self.process = subprocess.Popen(
                [str(CLI), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        self.requests = 0  # requests this script made itself (probes, scrapes, set-up)

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        self.requests += 1
        return httpx.get(f"{self.base_url}{path}", headers=headers, timeout=30)

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"serve exited with {self.process.returncode}:\n{self.stderr_path.read_text()}")
            try:
                self.get("/healthz")
                return
            except httpx.TransportError:
                self.requests -= 1  # never reached the server
                time.sleep(0.1)
        raise RuntimeError(f"serve not healthy after {timeout} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), whatever else runs on the machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redemptions_counted(server: Server) -> float | None:
    text = server.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "coupon_ledger_redemptions_total":
                return float(sample.value)
    return None


def recorded_uses(server: Server, tenant: Tenant) -> int:
    """The hot coupon's uses_count (GET /v1/coupons/{code} reads it once every earlier write is projected)."""
    for _ in range(300):
        response = server.get(f"/v1/coupons/{HOT}", headers={"Authorization": f"Bearer {tenant.api_key}"})
        if response.status_code == 200:
            return int(response.json()["uses_count"])
        time.sleep(0.1)
    raise RuntimeError(f"GET /v1/coupons/{HOT}: {response.status_code} {response.text}")


def create_hot_coupon(server: Server, tenant: Tenant) -> None:
    server.requests += 1
    response = httpx.post(
        f"{server.base_url}/v1/coupons",
        json={"code": HOT, "discount_type": "percentage", "discount_value": "10"},
        headers={"Authorization": f"Bearer {tenant.api_key}"},
        timeout=30,
    )
    if response.status_code not in (201, 409):
        raise RuntimeError(f"creating {HOT}: {response.status_code} {response.text}")


def parse_log(path: Path) -> tuple[int, int, int]:
    """(lines, lines that parse as JSON objects, access lines)."""
    lines = json_lines = access = 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        lines += 1
        try:
            parsed = json.loads(line)
        except ValueError:
            continue
        if isinstance(parsed, dict):
            json_lines += 1
            access += parsed.get("logger") == "coupon_ledger.access"
    return lines, json_lines, access


def one_run(
    url: str, tenant: Tenant, observed: bool, args: argparse.Namespace, config: Config, wrk: str, log_dir: Path
) -> Outcome:
    server = Server(url, log_dir, observed, args.workers, args.observe)
    try:
        server.wait_healthy()
        create_hot_coupon(server, tenant)
        target = f"{server.base_url}/v1/coupons/apply"
        run_id = uuid4().hex[:8]
        codes = [HOT, "U", "1"]
        warm = run_wrk(wrk, target, args.warmup, config, [tenant.api_key, "hot", *codes, f"{run_id}-warm"])
        recorded_before = recorded_uses(server, tenant)
        before = redemptions_counted(server)
        cpu_before = cpu_seconds(server.process.pid)
        measured = run_wrk(wrk, target, args.seconds, config, [tenant.api_key, "hot", *codes, run_id])
        cpu = cpu_seconds(server.process.pid) - cpu_before
        after = redemptions_counted(server)
        recorded_after = recorded_uses(server, tenant)
    finally:
        server.stop()
    lines, json_lines, access = parse_log(server.stderr_path)
    wrk_requests = warm.ok + warm.errors + measured.ok + measured.errors
    delta = after - before if after is not None and before is not None else None
    outcome = Outcome(
        observed,
        measured,
        delta,
        recorded_after - recorded_before,
        lines,
        json_lines,
        access,
        wrk_requests + server.requests,
        cpu / max(1, measured.ok + measured.errors),
    )
    state = "on " if observed else "off"
    print(
        f"[observability] run {state}: {measured.ok_per_s:8.1f} req/s, load {load_average()}",
        file=sys.stderr,
        flush=True,
    )
    return outcome


def report(outcomes: list[Outcome], config: Config, seconds: int, header: list[str]) -> str:
    lines = [*header, ""]
    lines.append(
        f"{'run':<4}{'obs':<5}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'2xx (wrk)':>11}{'counter +':>11}"
        f"{'db uses +':>11}{'agree':>7}{'log lines':>11}{'JSON':>8}{'access':>8}{'requests':>10}{'extra':>7}"
        f"{'cpu us/req':>12}"
    )
    for number, o in enumerate(outcomes, 1):
        m = o.measured
        if o.counter_delta is None:
            counted, agree = "-", "-"
        else:
            counted = f"{o.counter_delta:.0f}"
            agree = "yes" if m.ok <= o.counter_delta <= m.ok + config.connections else "NO"
        lines.append(
            f"{number:<4}{'on' if o.observed else 'off':<5}{m.ok_per_s:>9.1f}{m.p50_ms:>9.2f}{m.p99_ms:>9.2f}"
            f"{m.ok:>11}{counted:>11}{o.recorded_delta:>11}{agree:>7}{o.lines:>11}{o.json_lines:>8}"
            f"{o.access_lines:>8}{o.requests_seen:>10}{o.access_lines - o.requests_seen if o.observed else '-':>7}"
            f"{o.cpu_per_request * 1e6:>12.0f}"
        )
    on = [o.measured.ok_per_s for o in outcomes if o.observed]
    off = [o.measured.ok_per_s for o in outcomes if not o.observed]
    lines.append("")
    if on and off:
        mean_on, mean_off = statistics.mean(on), statistics.mean(off)
        lines.append(
            f"mean req/s with metrics + access log on: {mean_on:.1f}; off: {mean_off:.1f}; "
            f"on/off = {mean_on / mean_off:.3f} ({(mean_on / mean_off - 1) * 100:+.1f}%)"
        )
        cpu_on = statistics.mean(o.cpu_per_request for o in outcomes if o.observed) * 1e6
        cpu_off = statistics.mean(o.cpu_per_request for o in outcomes if not o.observed) * 1e6
        lines.append(
            f"mean CPU of the serve process per request (user + system, /proc; less sensitive to the machine's"
            f" other load than req/s): on {cpu_on:.0f} us, off {cpu_off:.0f} us, difference {cpu_on - cpu_off:+.0f} us"
        )
    every_json = all(o.lines == o.json_lines for o in outcomes)
    lines.append(f"every stderr line of every run parsed as JSON: {'yes' if every_json else 'NO'}")
    lines.append(
        f"agree: wrk's 2xx <= counter increase <= wrk's 2xx + {config.connections} (requests in flight when wrk"
        f" stops are answered after it stopped counting); db uses +: the coupon's uses_count over the {seconds} s"
        " run (after the warm-up); access: access lines in stderr; requests: wrk's requests (warm-up included)"
        " plus this script's probes and scrapes; extra = access - requests: the requests in flight when each of"
        f" the two wrk runs stopped (at most 2 x {config.connections}), answered and logged but not counted by wrk"
    )
    return "\n".join(lines)


def observer_cost(calls: int = 20_000) -> str:
    """CPU time per request of api.access.RequestObserver (what RequestContext adds when a request
    ends), measured in a fresh process in multiprocess mode (as under serve), logging to a file."""
    code = f"""
import os, tempfile, time
os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp()
from api.access import RequestObserver
from api.logs import configure_logging
from api.settings import Settings
from ledger.metrics import metrics
log = open(os.path.join(tempfile.mkdtemp(), "stderr"), "w")
configure_logging(Settings(log_format="json"), log)
scope = {{"method": "POST", "path": "/v1/coupons/apply", "client": ("127.0.0.1", 5000),
          "state": {{"request_id": "0" * 32, "route_template": "/v1/coupons/apply", "key_id": "key_0123456789abcdef"}}}}
for name, observer in [("metrics", RequestObserver(False, metrics())), ("access line", RequestObserver(True, None)),
                       ("both", RequestObserver(True, metrics()))]:
    for _ in range(1000):
        observer.finished(scope, 201, 0.004)
    began = time.process_time()
    for _ in range({calls}):
        observer.finished(scope, 201, 0.004)
    print(f"{{name}}: {{(time.process_time() - began) / {calls} * 1e6:.1f}} us")
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"(could not measure: {done.stderr.strip()[-300:]})"
    return "; ".join(done.stdout.split("\n")).strip("; ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.observability", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="measured seconds of each run (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up seconds of each run (default 2)")
    parser.add_argument("--pairs", type=int, default=2, help="on/off pairs of runs, alternating (default 2)")
    parser.add_argument("--workers", type=int, default=1, help="serve --workers (default 1)")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--observe", choices=("both", "metrics", "access"), default="both", help="what the 'on' runs turn on"
    )
    args = parser.parse_args(argv)
    wrk = ensure_wrk()
    config = Config(
        levels=("http",),
        workloads=("hot",),
        sides=("ledger",),
        engine_seconds=0,
        http_seconds=args.seconds,
        engine_warmup=0,
        http_warmup=args.warmup,
        callers=0,
        connections=args.connections,
        wrk_threads=2,
        wrk_timeout=10,
        coupons=1,
        conventional_pool=0,
        ledger_pool=0,
    )
    log_dir = Path(tempfile.mkdtemp(prefix="coupon-observability-"))
    started = time.perf_counter()
    outcomes: list[Outcome] = []
    with (
        benchmark_server("observability") as (server_url, where),
        fresh_database(server_url, f"observability_{uuid4().hex[:8]}") as url,
    ):
        apply_schema(url)
        tenant = create_ledger_retailer(url)
        header = [
            "coupon-ledger observability: metrics and access log under load, and their cost",
            machine_line(server_url, where, wrk),
            f"each run: a fresh `serve --workers {args.workers}`, {args.warmup} s warm-up, {args.seconds} s of wrk"
            f" ({args.connections} connections, 2 threads) on one coupon, /metrics scraped before and after;"
            f" on = {'metrics and access log' if args.observe == 'both' else args.observe + ' only'}",
        ]
        for pair in range(args.pairs):
            # on, off, off, on, ...: a drift in the machine's load favours neither.
            for observed in (True, False) if pair % 2 == 0 else (False, True):
                outcomes.append(one_run(url, tenant, observed, args, config, wrk, log_dir))
    header.append(f"wall time {time.perf_counter() - started:.0f} s; server logs in {log_dir}")
    text = report(outcomes, config, args.seconds, header)
    cost = observer_cost()
    print(f"{text}\nCPU per request of the observer (multiprocess mode, JSON lines to a file): {cost}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
