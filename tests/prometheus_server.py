"""Test support (not a test module): a real Prometheus server, and small local fakes of its HTTP API.

- `require_prometheus()`: the `prometheus` binary (Debian package), or a skip - a failure under CI, where
  a missing binary means a broken install step, not an optional test.
- `PrometheusServer`: runs the real binary on 127.0.0.1:<free port> with a temporary config and TSDB,
  waits until it is ready and a given metric has been scraped, and stops it by PID.
- `FakePrometheusAPI`: a tiny HTTP server answering with crafted responses of the documented API (edge
  cases a real server will not produce on demand: "+Inf", several series, 503s) and recording requests;
  it can hold its answers until the test releases them (a slow server, without a sleep anywhere).
- `SilentServer`: accepts TCP connections and never answers (timeouts).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests


def require_prometheus() -> str:
    """Path of the `prometheus` binary; when missing, fail under CI (env CI set) and skip otherwise."""
    binary = shutil.which("prometheus")
    if binary:
        return binary
    message = "the prometheus binary is not installed (Debian: apt-get install -y prometheus)"
    if os.environ.get("CI"):
        raise RuntimeError(message + "; CI must run the Prometheus tests")
    pytest.skip(message)


def find_free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (bound by the OS, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.1):
    """Poll `predicate()` until it returns something truthy (returned); TimeoutError naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)


class PrometheusServer:
    """The real Prometheus, scraping `targets` every `scrape_interval`, as a context manager.

    targets: (job name, "host:port") pairs. wait_for: a PromQL query that must return a sample before
    `__enter__` returns (e.g. the first scraped metric), so tests never sleep blindly. backfill: an
    OpenMetrics file turned into TSDB blocks (`promtool tsdb create-blocks-from openmetrics`) before the
    server starts on them, kept however old (a bundled trace from years ago is history, not expired data).
    """

    def __init__(
        self,
        targets: Sequence[tuple[str, str]],
        *,
        wait_for: str | None = None,
        scrape_interval: str = "1s",
        enable_lifecycle: bool = False,
        timeout_s: float = 30.0,
        binary: str | None = None,
        backfill: Path | None = None,
    ) -> None:
        self.binary = binary or require_prometheus()
        self.backfill = backfill
        self.targets = list(targets)
        self.wait_for = wait_for
        self.scrape_interval = scrape_interval
        self.enable_lifecycle = enable_lifecycle
        self.timeout_s = timeout_s
        self.port = 0
        self.process: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._log = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config_text(self) -> str:
        lines = ["global:", f"  scrape_interval: {self.scrape_interval}",
                 f"  evaluation_interval: {self.scrape_interval}", "scrape_configs:"]
        for job, target in self.targets:
            lines += [f"  - job_name: {json.dumps(job)}", f"    scrape_timeout: {self.scrape_interval}",
                      "    static_configs:", f"      - targets: [{json.dumps(target)}]"]
        return "\n".join(lines) + "\n"

    def __enter__(self) -> PrometheusServer:
        self._tmp = tempfile.TemporaryDirectory(prefix="harmony-prometheus-")
        root = Path(self._tmp.name)
        (root / "prometheus.yml").write_text(self.config_text())
        self.port = find_free_port()
        args = [
            self.binary, f"--config.file={root / 'prometheus.yml'}", f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn",
        ]
        if self.enable_lifecycle:
            args.append("--web.enable-lifecycle")
        if self.backfill is not None:
            promtool = shutil.which("promtool") or str(Path(self.binary).with_name("promtool"))
            subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(self.backfill),
                            str(root / "data")], check=True, capture_output=True, timeout=self.timeout_s)
            args.append("--storage.tsdb.retention.time=100y")
        self._log = open(root / "prometheus.log", "wb")  # closed in stop()
        self.process = subprocess.Popen(args, stdout=self._log, stderr=subprocess.STDOUT, cwd=root)
        try:
            deadline = time.monotonic() + self.timeout_s
            self._wait(self._ready, deadline, "/-/ready")
            if self.wait_for:
                self._wait(lambda: self.query(self.wait_for), deadline, f"a sample of {self.wait_for!r}")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait(self, predicate, deadline: float, what: str) -> None:
        while not predicate():
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited with status {self.process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus at {self.url}: no {what} within {self.timeout_s:g}s: "
                                   f"{self.log_tail()}")
            time.sleep(0.1)

    def _ready(self) -> bool:
        try:
            return requests.get(self.url + "/-/ready", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    def query(self, promql: str) -> list[dict]:
        """Instant query; the result list ([] when nothing matches or the server does not answer)."""
        try:
            body = requests.get(self.url + "/api/v1/query", params={"query": promql}, timeout=2).json()
        except (requests.RequestException, ValueError):
            return []
        return body.get("data", {}).get("result", []) if body.get("status") == "success" else []

    def log_tail(self, chars: int = 1500) -> str:
        if self._tmp is None:
            return ""
        path = Path(self._tmp.name) / "prometheus.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return " ".join(text[-chars:].split()) or "(no log output)"

    def stop(self) -> None:
        """Terminate the process by PID, wait, kill if it lingers; remove the temp dir."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# --------------------------------------------------------------------------------------------------
class FakePrometheusAPI:
    """A local HTTP server answering queued (status, body) responses, recording each request.

    `responses` are served in order; the last one repeats. A dict body is sent as JSON, a str as is, and a
    callable is called with the request's query parameters (a dict of str) for the dict or str to send, so
    that an answer can fit the range asked for (`range_answer`).
    `requests` holds (method, path with query, headers) of every request received, recorded on arrival.
    `release`: answers wait until it is set (it is, unless the test clears it to make the server slow); a
    client whose timeout passes meanwhile gets no answer, and the held answer goes nowhere.
    """

    def __init__(self, responses: Sequence[tuple[int, dict | str | Callable[[dict], dict | str]]]) -> None:
        self.responses = list(responses)
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.release = threading.Event()
        self.release.set()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with fake._lock:
                    fake.requests.append(("GET", self.path, dict(self.headers)))
                    status, body = fake.responses[0] if len(fake.responses) == 1 else fake.responses.pop(0)
                fake.release.wait(60)  # bounded: a test that forgets to release must not hang the server
                if callable(body):
                    body = body({k: v[-1] for k, v in parse_qs(urlsplit(self.path).query).items()})
                data = json.dumps(body).encode() if isinstance(body, dict) else body.encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json" if isinstance(body, dict) else "text/plain")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (its timeout): what a slow server's answer meets

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def __enter__(self) -> FakePrometheusAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()  # answers still held go out (to clients long gone) and free their threads
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def matrix(*series: Sequence[tuple[float, str]]) -> dict:
    """A successful query_range payload with one result per list of (unix seconds, value string)."""
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {"instance": f"i{k}"}, "values": [[t, v] for t, v in values]}
                       for k, values in enumerate(series)],
        },
    }


def range_answer(value: float) -> Callable[[dict], dict]:
    """A FakePrometheusAPI body: `value` at every step of the range asked for (start, end, step), as a
    healthy Prometheus answers a query_range over a steady series."""

    def answer(params: dict) -> dict:
        start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
        stamps = [start + k * step for k in range(int(round((end - start) / step)) + 1)]
        return matrix([(t, repr(float(value))) for t in stamps])

    return answer


class SilentServer:
    """Listens on 127.0.0.1 and accepts connections (the kernel's backlog does) but never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(self, *exc) -> None:
        self.sock.close()
