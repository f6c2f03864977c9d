"""Load test for `sifir serve`, on loopback only: many clients, real digits, every answer checked.

    python benchmarks/loadtest.py [MODEL] [--clients 8] [--duration 20] [--max-requests 20000]
    python benchmarks/loadtest.py MODEL --url http://127.0.0.1:8000   # a server already running

Unless --url is given, the script starts `sifir serve MODEL` itself on a free port and stops it at
the end. N clients (asyncio + httpx, one connection each) post real MNIST test digits as PNG data
URLs, each client waiting for its answer before sending the next, until the time is up or the
request budget is spent, whichever comes first. Every answer is compared with the offline
prediction for the same PNG (`sifir predict`'s path, ``reading.read_picture``: load_photo ->
find_digits -> normalize -> the model -> softmax; the first digit found): the digit must be the
same and the probabilities equal to 1e-6.

Reports requests/s, latency percentiles, errors and mismatches; exits 1 unless both are 0.
Only 127.0.0.1 is ever a target: this measures our server, it must not load anyone else's.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

ALLOWED_HOST = "127.0.0.1"


# -- the work: real MNIST digits as PNG data URLs, with the offline answers ----------------------
def png_bytes(image: np.ndarray) -> bytes:
    """A 2-D uint8 picture as PNG bytes."""
    from PIL import Image
    out = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(out, format="PNG")
    return out.getvalue()


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode("ascii")


def offline_prediction(model, png: bytes) -> np.ndarray:
    """Probabilities of the picture's first digit the way `sifir predict` computes them."""
    from sifir.reading import read_picture
    return read_picture(model, png).digits[0].probabilities


@dataclass
class Workload:
    bodies: list[bytes]           # JSON request bodies, ready to send
    expected: list[np.ndarray]    # offline probabilities, one per body
    labels: list[int]             # MNIST's labels (for the record; the check is against `expected`)


def build_workload(model_path, count: int = 200, data_dir=None) -> Workload:
    """The first ``count`` MNIST test digits, as request bodies plus their offline predictions."""
    import json

    from sifir import io as sifir_io
    from sifir.data import mnist
    model, _ = sifir_io.load_model(model_path)
    data = mnist.load_mnist(data_dir, download_missing=False)
    bodies, expected, labels = [], [], []
    for image, label in zip(data["test_images"][:count], data["test_labels"][:count]):
        png = png_bytes(image)
        bodies.append(json.dumps({"image": data_url(png)}).encode())
        expected.append(offline_prediction(model, png))
        labels.append(int(label))
    return Workload(bodies, expected, labels)


# -- the server ------------------------------------------------------------------------------------
def check_loopback(url: str) -> str:
    """The URL without a trailing slash; anything but http://127.0.0.1:PORT is refused."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != ALLOWED_HOST:
        raise ValueError(f"refusing to load {url!r}: the load test targets only http://{ALLOWED_HOST}:PORT")
    return url.rstrip("/")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((ALLOWED_HOST, 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    pid: int | None          # None for a server this script did not start
    token: str | None = None  # the training API's token, from the address `sifir serve` printed

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used so far (Linux /proc), or None where unknown."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError, TypeError):
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")   # utime + stime


@contextlib.contextmanager
def start_server(model_path=None, timeout: float = 60.0, args=(), env=None):
    """Run `sifir serve [MODEL]` on a free loopback port; yield a Server (url, pid, token) once the
    address it prints answers; stop it afterwards. ``args``: more options for `sifir serve`."""
    port = free_port()
    with tempfile.TemporaryFile() as log:   # a file, not a pipe: a full pipe would stall the server
        command = [sys.executable, "-m", "sifir.cli", "serve", *([str(model_path)] if model_path else []),
                   "--host", ALLOWED_HOST, "--port", str(port), *map(str, args)]
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        try:
            address = _wait_until_up(proc, port, timeout, log)
            parts = urlsplit(address)
            token = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("token")
            yield Server(f"{parts.scheme}://{parts.netloc}", proc.pid, token)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_until_up(proc, port: int, timeout: float, log) -> str:
    """The address the server printed ("serving … on http://127.0.0.1:PORT/?token=…"), once it answers."""
    deadline = time.monotonic() + timeout
    address = None
    while time.monotonic() < deadline:
        log.seek(0)
        printed = log.read().decode(errors="replace")
        if proc.poll() is not None:
            raise RuntimeError(f"sifir serve exited with {proc.returncode}:\n{printed}")
        if address is None:
            found = re.search(rf"http://{re.escape(ALLOWED_HOST)}:{port}/\S*", printed)
            address = found.group(0) if found else None
        if address is not None:
            try:
                with urllib.request.urlopen(f"http://{ALLOWED_HOST}:{port}/", timeout=2) as response:
                    if response.status == 200:
                        return address
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
        time.sleep(0.1)
    raise RuntimeError(f"sifir serve did not answer on port {port} within {timeout:.0f} s")


# -- the load ------------------------------------------------------------------------------------------
@dataclass
class Result:
    clients: int
    seconds: float
    client_cpu: float = 0.0                                 # CPU seconds this process spent sending
    latencies: list[float] = field(default_factory=list)   # of successful requests, in seconds
    errors: list[str] = field(default_factory=list)         # transport failures and non-200 answers
    mismatches: list[str] = field(default_factory=list)     # 200 answers that differ from offline

    @property
    def requests(self) -> int:
        return len(self.latencies) + len(self.errors)

    def summary(self) -> dict:
        lat = np.array(self.latencies) * 1000 if self.latencies else np.array([np.nan])
        return {"clients": self.clients, "seconds": round(self.seconds, 2), "requests": self.requests,
                "requests_per_s": round(self.requests / self.seconds, 1) if self.seconds else 0.0,
                "p50_ms": round(float(np.percentile(lat, 50)), 2), "p99_ms": round(float(np.percentile(lat, 99)), 2),
                "max_ms": round(float(np.max(lat)), 2), "errors": len(self.errors),
                "mismatches": len(self.mismatches)}


async def _client(http, url: str, work: Workload, state: dict, deadline: float, result: Result) -> None:
    while time.monotonic() < deadline and state["issued"] < state["budget"]:
        i = state["issued"] % len(work.bodies)   # single-threaded event loop: no lock needed
        state["issued"] += 1
        start = time.perf_counter()
        try:
            response = await http.post(url + "/api/predict", content=work.bodies[i],
                                       headers={"Content-Type": "application/json"})
        except Exception as e:  # noqa: BLE001 - every failure counts, whatever its kind
            result.errors.append(f"digit #{i}: {type(e).__name__}: {e}")
            continue
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            result.errors.append(f"digit #{i}: HTTP {response.status_code}: {response.text[:200]}")
            continue
        result.latencies.append(elapsed)
        answer = response.json()
        expected = work.expected[i]
        if answer.get("digit") != int(expected.argmax()) or not np.allclose(
                answer.get("probabilities", []), expected, rtol=1e-6, atol=1e-9):
            result.mismatches.append(f"digit #{i}: server said {answer.get('digit')}, offline {int(expected.argmax())}")


async def _load(url: str, work: Workload, clients: int, duration: float, max_requests: int) -> Result:
    import httpx
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    state = {"issued": 0, "budget": max_requests}
    result = Result(clients, 0.0)
    async with httpx.AsyncClient(limits=limits, timeout=30.0, trust_env=False) as http:
        start, cpu = time.monotonic(), time.process_time()
        deadline = start + duration
        await asyncio.gather(*(_client(http, url, work, state, deadline, result) for _ in range(clients)))
        result.seconds, result.client_cpu = time.monotonic() - start, time.process_time() - cpu
    return result


def run_load(url: str, work: Workload, clients: int = 8, duration: float = 20.0,
             max_requests: int = 20_000) -> Result:
    """Load ``url`` (loopback only) with ``clients`` concurrent clients; stops by time or count."""
    url = check_loopback(url)
    if clients < 1 or duration <= 0 or max_requests < 1:
        raise ValueError("clients and max_requests must be at least 1, duration positive")
    return asyncio.run(_load(url, work, clients, duration, max_requests))


# -- command line ----------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("model", nargs="?", help="model file (default: the last one `sifir train` wrote)")
    p.add_argument("--url", help=f"a server already running on http://{ALLOWED_HOST}:PORT (default: start one)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients")
    p.add_argument("--duration", type=float, default=20.0, help="seconds to run at most")
    p.add_argument("--max-requests", type=int, default=20_000, help="requests to send at most")
    p.add_argument("--digits", type=int, default=200, help="distinct MNIST test digits to cycle through")
    p.add_argument("--data-dir", help="folder with MNIST (default: $SIFIR_DATA_DIR or the user cache)")
    args = p.parse_args(argv)

    from sifir.cli import last_model
    model = Path(args.model) if args.model else last_model()
    if model is None:
        p.error("no model: name a model file, or train one with `sifir train --model seed`")
    try:
        url = check_loopback(args.url) if args.url else None
    except ValueError as e:
        p.error(str(e))
    work = build_workload(model, args.digits, args.data_dir)
    with (contextlib.nullcontext(Server(url, None)) if url else start_server(model)) as server:
        print(f"{args.clients} clients on {server.url} for up to {args.duration:g} s or {args.max_requests:,} "
              f"requests, cycling {len(work.bodies)} MNIST test digits (model {model})", flush=True)
        cpu_before = server.cpu_seconds()
        result = run_load(server.url, work, args.clients, args.duration, args.max_requests)
        cpu_after = server.cpu_seconds()
    s = result.summary()
    print(f"requests     {s['requests']:,} in {s['seconds']} s = {s['requests_per_s']} requests/s")
    print(f"latency      p50 {s['p50_ms']} ms   p99 {s['p99_ms']} ms   max {s['max_ms']} ms")
    if result.requests:
        if cpu_before is not None and cpu_after is not None:
            print(f"server CPU   {1000 * (cpu_after - cpu_before) / result.requests:.2f} ms per request")
        print(f"client CPU   {1000 * result.client_cpu / result.requests:.2f} ms per request "
              f"(on {os.cpu_count()} cores shared with the server)")
    print(f"errors       {s['errors']}")
    print(f"mismatches   {s['mismatches']}  (answers that differ from the offline prediction)")
    for line in (result.errors + result.mismatches)[:10]:
        print("  " + line)
    return 0 if not result.errors and not result.mismatches and result.requests else 1


if __name__ == "__main__":
    sys.exit(main())
