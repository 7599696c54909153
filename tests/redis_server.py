"""A real ``redis-server`` (Debian's) on a free port of 127.0.0.1, for the tests that need one."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

needs_redis_server = pytest.mark.skipif(shutil.which("redis-server") is None,
                                        reason="Debian redis-server is not installed")


class RedisServer:
    """``start``/``stop`` a redis-server; with ``directory``, an append-only file fsynced on every
    write keeps its data across a restart."""

    def __init__(self, directory: Path | None = None) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        if directory is not None:
            self.args += ["--dir", str(directory), "--appendonly", "yes", "--appendfsync", "always"]
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        import redis

        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(200):
            try:
                redis.Redis(port=self.port).ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
