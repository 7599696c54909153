"""Batch work keeps freed memory: a freed large tensor stays in the process for the next batch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dissect_core.heap import retain_freed_memory

PROBE = """
import sys, torch
torch.set_num_threads(1)
from dissect_core.heap import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20
t = torch.ones(6 << 20)  # 24 MB, touched
held = rss_mb()
del t
print(round(held - rss_mb(), 1))  # MB the free gave back to the system (to be faulted in again next batch)
"""


def given_back_mb(mode: str) -> float:
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    return float(result.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_freed_memory_stays_in_the_process() -> None:
    assert given_back_mb("default") >= 20  # glibc unmaps a freed 24 MB block at once
    assert given_back_mb("retain") < 1  # kept for the next batch's tensors of that size


def test_it_is_a_no_op_answer_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert retain_freed_memory() is False
