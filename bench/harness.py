"""python -m bench.harness: the ledger and a conventional row-locking service, side by side.

One invocation runs both services on the same PostgreSQL (DATABASE_URL, else an embedded
server in a temporary folder), with the same coupons (percentage 10, no limit), at two levels:

- engine: 64 asyncio tasks in one event loop call ``CouponLedger.apply_async`` or
  ``bench.conventional.apply`` back to back for a fixed duration; every call is timed.
- http: for every run the service starts fresh as one uvicorn process on its own port (the
  real ``coupon-ledger serve``; ``python -m bench.conventional``) and ``wrk`` (64 connections,
  2 threads, ``bench/wrk_apply.lua``) posts to ``/v1/coupons/apply`` with a fresh
  Idempotency-Key per request. Only one server runs at a time.

Two workloads: ``hot`` (every request redeems one coupon) and ``uniform`` (a random coupon of
10,000). Each run is preceded by a warm-up that is not counted (for uniform, long enough to use
every coupon once, each in turn, so that both sides measure steady state; a coupon's first load
after a restart is measured by bench/capacity.py); the two sides take turns going first.
Afterwards each side's hot coupon is read back from its database and its uses compared with the
redemptions acknowledged, so that no side looks fast by skipping the work. The harness prints one
table per level and workload (successful requests/s, p50, p99, errors) and the ratio of the
ledger's requests/s to the conventional service's. It reports; it does not judge: the exit code is
0 whatever the ratios, and non-zero only if the benchmark itself could not run.

``--quick`` shrinks every duration and the uniform set so that a test can run it end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TextIO
from uuid import UUID, uuid4

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from api.database import apply_schema, eventsourcing_env, open_ledger, start_embedded, stop_embedded
from bench import conventional
from ledger.commands import CreateCoupon, Redeem
from ledger.domain import Order

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
LUA_SCRIPT = BENCH_DIR / "wrk_apply.lua"
CLI = Path(sys.executable).with_name("coupon-ledger")
SIDES = ("ledger", "conventional")
LEVELS = ("engine", "http")
WORKLOADS = ("hot", "uniform")
SUBTOTAL = Decimal("100.00")
PERCENT_10 = {"discount_type": "percentage", "discount_value": Decimal("10")}
UNIFORM_PREFIX = "U"
RESULT_MARK = "BENCH_RESULT "


@dataclass(frozen=True)
class Config:
    levels: tuple[str, ...]
    workloads: tuple[str, ...]
    sides: tuple[str, ...]
    engine_seconds: float
    http_seconds: int
    engine_warmup: float
    http_warmup: int
    callers: int
    connections: int
    wrk_threads: int
    wrk_timeout: int
    coupons: int
    conventional_pool: int
    ledger_pool: int

    def describe(self) -> str:
        parts = []
        if "engine" in self.levels:
            parts.append(
                f"engine {self.engine_seconds:g} s per run after {self.engine_warmup:g} s warm-up, "
                f"{self.callers} callers (asyncio tasks, one event loop)"
            )
        if "http" in self.levels:
            parts.append(
                f"http {self.http_seconds} s per run after {self.http_warmup} s warm-up, "
                f"wrk {self.connections} connections, {self.wrk_threads} threads, timeout {self.wrk_timeout} s"
            )
        parts.append(f"uniform over {self.coupons} coupons (its warm-up uses each once, in turn)")
        parts.append(f"conventional pool {self.conventional_pool} connections")
        return "; ".join(parts)


@dataclass(frozen=True)
class Coupons:
    """The codes both sides create: one hot coupon per level and the uniform set."""

    count: int

    @staticmethod
    def hot(level: str) -> str:
        return f"HOT-{level.upper()}"

    def uniform(self) -> list[str]:
        return [f"{UNIFORM_PREFIX}{index:05d}" for index in range(self.count)]

    def all_codes(self) -> list[str]:
        return [self.hot(level) for level in LEVELS] + self.uniform()


@dataclass(frozen=True)
class Tenant:
    retailer_id: UUID
    api_key: str


@dataclass(frozen=True)
class Measurement:
    ok: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    first_error: str = ""

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Run:
    """One workload on one side: the measured phase, and the 2xx answers of warm-up and measured phase."""

    measured: Measurement
    acknowledged: int


@dataclass(frozen=True)
class Side:
    name: str
    url: str
    tenant: Tenant


Results = dict[tuple[str, str, str], Run]  # (level, workload, side)
Recorded = dict[tuple[str, str], int]  # (level, side) -> uses of the level's hot coupon in the database


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# --- the database --------------------------------------------------------------------------------------


@contextmanager
def benchmark_server(name: str = "bench") -> Iterator[tuple[str, str]]:
    """The PostgreSQL server to use (DATABASE_URL, else a new embedded one in a temporary folder,
    removed afterwards) and how to describe it."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield external, "the server at DATABASE_URL"
        return
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    folder = Path(tempfile.mkdtemp(prefix=f"coupon-{name}-"))
    try:
        yield start_embedded(folder / name), f"embedded, in {folder}"
    finally:
        stop_embedded(folder / name)  # before its folder goes: PostgreSQL would outlive it by a minute
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def fresh_database(server_url: str, name: str) -> Iterator[str]:
    """A new database on the server, dropped afterwards; the server's own database if we may not create one."""
    try:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.errors.InsufficientPrivilege:
        log(f"no right to create databases: using {conninfo_to_dict(server_url).get('dbname')} for {name}")
        yield server_url
        return
    try:
        yield make_conninfo(server_url, dbname=name)
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_version(url: str) -> str:
    with psycopg.connect(url) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


# --- processes -------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(database_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("PERSISTENCE_MODULE")}
    env["DATABASE_URL"] = database_url
    # Like the conventional service, no line per request (bench/observability.py measures what
    # the access log costs); set COUPON_LEDGER_ACCESS_LOG to compare otherwise.
    env.setdefault("COUPON_LEDGER_ACCESS_LOG", "false")
    env.update(extra or {})
    return env


class ServerProcess:
    """One HTTP server process on its own port, its output in a log file."""

    def __init__(
        self, name: str, command: list[str], database_url: str, log_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.name = name
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_dir / f"{name}-{self.port}.log"
        self._log: TextIO = self.log_path.open("w")
        self.process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=ROOT,
            env=child_env(database_url, env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not healthy after {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)
        self._log.close()

    def log_tail(self, lines: int = 40) -> str:
        self._log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running(
    name: str, command: list[str], database_url: str, log_dir: Path, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    server = ServerProcess(name, command, database_url, log_dir, env)
    try:
        started = time.perf_counter()
        server.wait_healthy()
        log(f"{name} listening on {server.base_url} ({time.perf_counter() - started:.1f} s to start)")
        yield server
    finally:
        server.stop()


def ledger_server_command() -> list[str]:
    if not CLI.exists():
        raise SystemExit(f"{CLI} not found: install the project first (pip install -e .)")
    return [str(CLI), "serve"]


def conventional_server_command(pool_size: int) -> list[str]:
    return [sys.executable, "-m", "bench.conventional", "--pool-size", str(pool_size)]


# --- set-up -----------------------------------------------------------------------------------------------


def create_ledger_retailer(url: str) -> Tenant:
    created = subprocess.run(
        [str(CLI), "retailer", "create", "bench-ledger"],
        cwd=ROOT,
        env=child_env(url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if created.returncode != 0:
        raise RuntimeError(f"coupon-ledger retailer create failed:\n{created.stdout}{created.stderr}")
    printed = json.loads(created.stdout.strip().splitlines()[-1])
    return Tenant(UUID(printed["retailer_id"]), printed["api_key"])


async def create_coupons_over_http(base_url: str, api_key: str, codes: list[str], concurrency: int = 32) -> None:
    limit = asyncio.Semaphore(concurrency)
    headers = {"Authorization": f"Bearer {api_key}"}
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=60, limits=httpx.Limits(max_connections=concurrency)
    ) as client:

        async def create(code: str) -> None:
            body = {"code": code, "discount_type": "percentage", "discount_value": "10"}
            for attempt in range(1, 4):
                try:
                    async with limit:
                        response = await client.post("/v1/coupons", json=body)
                except httpx.TransportError as error:
                    # The connection went before the answer came (a kept-alive connection the server
                    # closed as it was reused): the coupon may or may not have been created.
                    log(f"creating {code}: {error!r}; trying again ({attempt} of 3)")
                    continue
                if response.status_code == 201:
                    return
                if attempt > 1 and response.status_code == 409 and "COUPON_CODE_TAKEN" in response.text:
                    return  # made by the attempt whose answer was lost: every code is the bench's own
                raise RuntimeError(f"creating {code}: {response.status_code} {response.text}")
            raise RuntimeError(f"creating {code}: no answer in 3 attempts")

        await asyncio.gather(*(create(code) for code in codes))


def create_ledger_coupons_in_process(url: str, retailer_id: UUID, codes: list[str]) -> None:
    ledger = open_ledger(eventsourcing_env(url, pool_size=8, max_overflow=8))
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda code: ledger.execute(CreateCoupon(retailer_id, code, PERCENT_10)), codes))
    finally:
        ledger.close()


def set_up_ledger(url: str, config: Config, coupons: Coupons, log_dir: Path) -> Tenant:
    apply_schema(url)
    started = time.perf_counter()
    codes = coupons.all_codes()
    if "http" in config.levels:
        tenant = create_ledger_retailer(url)
        with running("ledger-setup", ledger_server_command(), url, log_dir) as server:
            asyncio.run(create_coupons_over_http(server.base_url, tenant.api_key, codes))
        how = "over HTTP"
    else:
        tenant = Tenant(uuid4(), "")
        create_ledger_coupons_in_process(url, tenant.retailer_id, codes)
        how = "with CouponLedger.create_coupon"
    log(f"ledger: {len(codes)} coupons created {how} in {time.perf_counter() - started:.1f} s")
    return tenant


def set_up_conventional(url: str, coupons: Coupons) -> Tenant:
    started = time.perf_counter()
    conventional.install(url)
    retailer_id, api_key = conventional.create_retailer(url, "bench-conventional")
    codes = coupons.all_codes()
    conventional.create_coupons(url, retailer_id, codes)
    log(f"conventional: {len(codes)} coupons created in {time.perf_counter() - started:.1f} s")
    return Tenant(retailer_id, api_key)


# --- the engine level ------------------------------------------------------------------------------------


def percentile_ms(sorted_seconds: list[float], fraction: float) -> float:
    if not sorted_seconds:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_seconds)))
    return sorted_seconds[rank - 1] * 1000


def describe_error(error: Exception) -> str:
    if isinstance(error, conventional.RedemptionRefused):
        return f"{error.status} {error.code}"
    return type(error).__name__


async def drive(call: Callable[[str], Awaitable[object]], callers: int, seconds: float, key_prefix: str) -> Measurement:
    """``callers`` tasks call ``call(idempotency_key)`` back to back until ``seconds`` have passed."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    first_error: list[str] = []
    deadline = time.perf_counter() + seconds

    async def caller(number: int) -> None:
        sent = 0
        while time.perf_counter() < deadline:
            sent += 1
            started = time.perf_counter()
            try:
                await call(f"{key_prefix}-{number}-{sent}")
            except Exception as error:
                errors[describe_error(error)] += 1
                if not first_error:
                    first_error.append(f"{describe_error(error)}: {error}")
                continue
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(caller(number) for number in range(callers)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return Measurement(
        ok=len(latencies),
        seconds=elapsed,
        p50_ms=percentile_ms(latencies, 0.50),
        p99_ms=percentile_ms(latencies, 0.99),
        errors=sum(errors.values()),
        error_kinds=dict(errors),
        first_error=first_error[0] if first_error else "",
    )


def code_picker(workload: str, level: str, coupons: Coupons, sweep: bool = False) -> Callable[[], str]:
    if workload == "hot":
        hot = coupons.hot(level)
        return lambda: hot
    uniform = coupons.uniform()
    if sweep:  # each code in turn: the warm-up uses every coupon once
        return itertools.cycle(uniform).__next__
    return lambda: random.choice(uniform)


def warmup_seconds(workload: str, coupons: Coupons, least: float, rate: float) -> float:
    """Long enough for the uniform warm-up to use every coupon once at ``rate`` requests/s: both
    sides then measure steady state (a first load after a restart is bench/capacity.py's)."""
    return least if workload == "hot" else max(least, coupons.count / rate)


async def measure_engine(
    apply_once: Callable[[str, str], Awaitable[object]], workload: str, config: Config, coupons: Coupons, run_id: str
) -> Run:
    pick = code_picker(workload, "engine", coupons)
    sweep = code_picker(workload, "engine", coupons, sweep=True)

    async def call(key: str) -> None:
        await apply_once(pick(), key)

    async def warm(key: str) -> None:
        await apply_once(sweep(), key)

    prefix = f"{run_id}-engine-{workload}"
    warmup_for = warmup_seconds(workload, coupons, config.engine_warmup, rate=2000)
    warmup = await drive(warm, config.callers, warmup_for, f"{prefix}-warmup")
    measured = await drive(call, config.callers, config.engine_seconds, prefix)
    return Run(measured, warmup.ok + measured.ok)


def run_engine_ledger(side: Side, workload: str, config: Config, coupons: Coupons, run_id: str) -> Run:
    ledger = open_ledger(eventsourcing_env(side.url, pool_size=config.ledger_pool, max_overflow=config.callers))
    try:

        async def apply_once(code: str, key: str) -> None:
            await ledger.execute_async(Redeem(side.tenant.retailer_id, code, Order.of(SUBTOTAL), idempotency_key=key))

        return asyncio.run(measure_engine(apply_once, workload, config, coupons, run_id))
    finally:
        ledger.close()


def run_engine_conventional(side: Side, workload: str, config: Config, coupons: Coupons, run_id: str) -> Run:
    async def main() -> Run:
        async with conventional.open_pool(side.url, config.conventional_pool) as pool:
            await pool.wait()

            async def apply_once(code: str, key: str) -> None:
                await conventional.apply(pool, side.tenant.retailer_id, code, SUBTOTAL, idempotency_key=key)

            return await measure_engine(apply_once, workload, config, coupons, run_id)

    return asyncio.run(main())


# --- the HTTP level --------------------------------------------------------------------------------------


def ensure_wrk() -> str:
    """The wrk binary; installed with apt-get when missing (needs root)."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise SystemExit("wrk is not installed and this is not root: install it (apt-get install -y wrk) and rerun")
    log("installing wrk with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "wrk"]
    if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
        attempt = subprocess.run(install, env=env, capture_output=True, text=True, check=False)
        if attempt.returncode != 0:
            raise SystemExit(f"could not install wrk with apt-get:\n{attempt.stdout}{attempt.stderr}")
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("apt-get reported success but wrk is still not on PATH")
    return found


def wrk_version(wrk: str) -> str:
    printed = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    words = (printed.stdout + printed.stderr).split()
    return words[1] if len(words) > 1 else "?"


def run_wrk(wrk: str, url: str, seconds: int, config: Config, script_args: list[str]) -> Measurement:
    command = [
        wrk,
        f"-t{config.wrk_threads}",
        f"-c{config.connections}",
        f"-d{seconds}s",
        f"--timeout={config.wrk_timeout}s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        *script_args,
    ]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=seconds + config.wrk_timeout + 60)
    lines = [line for line in finished.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if finished.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({finished.returncode}):\n{finished.stdout}{finished.stderr}")
    printed = json.loads(lines[-1][len(RESULT_MARK) :])
    kinds = {str(status): int(count) for status, count in printed["statuses"].items()}
    for kind in ("connect", "read", "write", "timeout"):
        if printed[kind]:
            kinds[kind] = int(printed[kind])
    return Measurement(
        ok=int(printed["ok"]),
        seconds=float(printed["seconds"]),
        p50_ms=float(printed["p50_ms"]),
        p99_ms=float(printed["p99_ms"]),
        errors=sum(int(printed[kind]) for kind in ("non2xx", "connect", "read", "write", "timeout")),
        error_kinds=kinds,
        first_error=str(printed["first_error"]),
    )


def wait_for_read_model(server: ServerProcess, tenant: Tenant, timeout: float = 600.0) -> None:
    """Let the ledger server's projection catch up with every event already written (the engine
    level writes without one), so that the measured run does not also pay for that backlog.

    GET /v1/coupons answers only once the read model reflects every earlier write, else 503.
    """
    started = time.perf_counter()
    headers = {"Authorization": f"Bearer {tenant.api_key}"}
    while time.perf_counter() - started < timeout:
        response = httpx.get(f"{server.base_url}/v1/coupons", params={"limit": 1}, headers=headers, timeout=30)
        if response.status_code == 200:
            log(f"{server.name}: read model caught up in {time.perf_counter() - started:.1f} s")
            return
        if response.status_code != 503:
            raise RuntimeError(f"GET /v1/coupons: {response.status_code} {response.text}")
    raise RuntimeError(f"{server.name}: read model still behind after {timeout} s:\n{server.log_tail()}")


def run_http(side: Side, workload: str, config: Config, coupons: Coupons, wrk: str, run_id: str, log_dir: Path) -> Run:
    """A fresh server for this run alone: warm-up, then the measured run."""
    if side.name == "ledger":
        command = ledger_server_command()
    else:
        command = conventional_server_command(config.conventional_pool)
    with running(f"{side.name}-http-{workload}", command, side.url, log_dir) as server:
        if side.name == "ledger":
            wait_for_read_model(server, side.tenant)
        target = f"{server.base_url}/v1/coupons/apply"
        prefix = f"{run_id}-http-{workload}"
        codes = [coupons.hot("http"), UNIFORM_PREFIX, str(coupons.count)]
        warmup_mode = "sweep" if workload == "uniform" else workload
        warmup_for = math.ceil(warmup_seconds(workload, coupons, config.http_warmup, rate=800))
        warmup_args = [side.tenant.api_key, warmup_mode, *codes, f"{prefix}-warmup"]
        warmup = run_wrk(wrk, target, warmup_for, config, warmup_args)
        measured = run_wrk(wrk, target, config.http_seconds, config, [side.tenant.api_key, workload, *codes, prefix])
    return Run(measured, warmup.ok + measured.ok)


# --- the report ------------------------------------------------------------------------------------------


def recorded_hot_uses(side: Side, code: str) -> int:
    """How many uses of ``code`` the side's database holds (read back independently of the run)."""
    if side.name == "ledger":
        ledger = open_ledger(eventsourcing_env(side.url, pool_size=1, max_overflow=0))
        try:
            return ledger.get_coupon(side.tenant.retailer_id, code).uses_count
        finally:
            ledger.close()
    with psycopg.connect(side.url) as conn:
        row = conn.execute(
            "SELECT uses_count FROM conv_coupons WHERE retailer_id = %s AND code = %s", (side.tenant.retailer_id, code)
        ).fetchone()
    return int(row[0]) if row else 0


def report(results: Results, recorded: Recorded, config: Config, header: list[str]) -> str:
    lines = [*header, ""]
    for level in (level for level in LEVELS if level in config.levels):
        for workload in config.workloads:
            lines.append(f"[{level} / {workload}]")
            lines.append(f"{'side':<14}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
            for side in config.sides:
                m = results[(level, workload, side)].measured
                lines.append(f"{side:<14}{m.ok_per_s:>10.1f}{m.p50_ms:>10.2f}{m.p99_ms:>10.2f}{m.errors:>8}")
            for side in config.sides:
                m = results[(level, workload, side)].measured
                if m.errors:
                    kinds = ", ".join(f"{kind} x{count}" for kind, count in sorted(m.error_kinds.items()))
                    lines.append(f"  {side} errors: {kinds}; first: {m.first_error[:200]}")
            if workload == "hot":
                for side in config.sides:
                    acknowledged = results[(level, workload, side)].acknowledged
                    uses = recorded[(level, side)]
                    verdict = "ok" if uses >= acknowledged else "FEWER USES RECORDED THAN ACKNOWLEDGED"
                    lines.append(
                        f"  {side} {Coupons.hot(level)}: {acknowledged} redemptions acknowledged (with warm-up), "
                        f"{uses} uses recorded: {verdict}"
                    )
            if len(config.sides) == len(SIDES):
                ledger_rate = results[(level, workload, "ledger")].measured.ok_per_s
                conventional_rate = results[(level, workload, "conventional")].measured.ok_per_s
                ratio = f"{ledger_rate / conventional_rate:.2f}" if conventional_rate else "n/a"
                lines.append(f"ratio ledger/conventional (req/s): {ratio}")
            lines.append("")
    lines.append("req/s counts successful (2xx) redemptions per second; errors are every other outcome.")
    return "\n".join(lines)


# --- the command ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(prog="python -m bench.harness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny durations and 100 uniform coupons (a smoke run)")
    parser.add_argument("--duration", type=float, help="measured seconds per run, both levels (http: whole seconds)")
    parser.add_argument("--warmup", type=float, help="warm-up seconds before each run, not counted")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    parser.add_argument("--callers", type=int, default=64, help="concurrent callers at the engine level (default 64)")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--wrk-timeout", type=int, default=10, help="seconds before wrk counts a timeout")
    parser.add_argument("--levels", default="engine,http", help="comma-separated: engine,http")
    parser.add_argument("--workloads", default="hot,uniform", help="comma-separated: hot,uniform")
    parser.add_argument("--sides", default="ledger,conventional", help="comma-separated: ledger,conventional")
    parser.add_argument("--coupons", type=int, help="coupons in the uniform workload (default 10000; quick 100)")
    parser.add_argument("--conv-pool-size", type=int, default=conventional.DEFAULT_POOL_SIZE)
    parser.add_argument("--ledger-pool-size", type=int, default=8, help="the engine-level ledger's pool_size")
    args = parser.parse_args(argv)

    def choices(text: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
        chosen = tuple(part.strip() for part in text.split(",") if part.strip())
        unknown = [part for part in chosen if part not in allowed]
        if unknown or not chosen:
            parser.error(f"--{what} takes a comma-separated subset of {','.join(allowed)}")
        return tuple(part for part in allowed if part in chosen)

    coupons = args.coupons if args.coupons is not None else (100 if args.quick else 10_000)
    if not 1 <= coupons <= 99_999:
        parser.error("--coupons must be between 1 and 99999")
    engine_seconds = args.duration if args.duration is not None else (1.0 if args.quick else 10.0)
    http_seconds = max(1, math.ceil(args.duration)) if args.duration is not None else (2 if args.quick else 12)
    warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 2.0)
    return Config(
        levels=choices(args.levels, LEVELS, "levels"),
        workloads=choices(args.workloads, WORKLOADS, "workloads"),
        sides=choices(args.sides, SIDES, "sides"),
        engine_seconds=engine_seconds,
        http_seconds=http_seconds,
        engine_warmup=warmup,
        http_warmup=max(1, math.ceil(warmup)),  # wrk counts whole seconds
        callers=args.callers,
        connections=args.connections,
        wrk_threads=args.wrk_threads,
        wrk_timeout=args.wrk_timeout,
        coupons=coupons,
        conventional_pool=args.conv_pool_size,
        ledger_pool=args.ledger_pool_size,
    )


def load_average() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def machine_line(server_url: str, where: str, wrk: str) -> str:
    return (
        f"machine: {os.cpu_count()} CPUs, {platform.system()} {platform.machine()}, "
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"PostgreSQL {postgres_version(server_url)} ({where})"
        + (f", wrk {wrk_version(wrk)}" if wrk else "")
        + f"; load average at start {load_average()}"
    )


def run_once(
    level: str, workload: str, side: Side, config: Config, coupons: Coupons, wrk: str, run_id: str, log_dir: Path
) -> Run:
    if level == "http":
        outcome = run_http(side, workload, config, coupons, wrk, run_id, log_dir)
    elif side.name == "ledger":
        outcome = run_engine_ledger(side, workload, config, coupons, run_id)
    else:
        outcome = run_engine_conventional(side, workload, config, coupons, run_id)
    log(f"{level:6} {workload:7} {side.name:12}: {outcome.measured.ok_per_s:9.1f} req/s (load {load_average()})")
    return outcome


def run(config: Config) -> str:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    wrk = ensure_wrk() if "http" in config.levels else ""
    run_id = uuid4().hex[:8]
    coupons = Coupons(config.coupons)
    log_dir = Path(tempfile.mkdtemp(prefix="coupon-bench-logs-"))
    log(f"server logs in {log_dir}")
    results: Results = {}
    recorded: Recorded = {}
    started = time.perf_counter()
    with (
        benchmark_server() as (server_url, where),
        fresh_database(server_url, f"bench_ledger_{run_id}") as ledger_url,
        fresh_database(server_url, f"bench_conventional_{run_id}") as conventional_url,
    ):
        header = [
            "coupon-ledger benchmark: the ledger vs a conventional row-locking service (bench/conventional.py)",
            machine_line(server_url, where, wrk),
            f"durations: {config.describe()}",
        ]
        sides = []
        if "ledger" in config.sides:
            sides.append(Side("ledger", ledger_url, set_up_ledger(ledger_url, config, coupons, log_dir)))
        if "conventional" in config.sides:
            sides.append(Side("conventional", conventional_url, set_up_conventional(conventional_url, coupons)))
        runs = 0
        for level in config.levels:
            for workload in config.workloads:
                # One side at a time, never both under load at once; who goes first alternates
                # (A B B A …) so that a drift in the machine's load does not favour one side.
                for side in sides if runs % 2 == 0 else sides[::-1]:
                    results[(level, workload, side.name)] = run_once(
                        level, workload, side, config, coupons, wrk, run_id, log_dir
                    )
                    if workload == "hot":
                        recorded[(level, side.name)] = recorded_hot_uses(side, coupons.hot(level))
                runs += 1
    header.append(
        f"wall time: {time.perf_counter() - started:.0f} s in all, set-up included; load average at end "
        f"{load_average()} (anything else running on the machine lowers every figure)"
    )
    shutil.rmtree(log_dir, ignore_errors=True)
    return report(results, recorded, config, header)


def main(argv: list[str] | None = None) -> int:
    print(run(parse_args(argv)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
