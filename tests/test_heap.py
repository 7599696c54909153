"""Batch work keeps freed memory: re-allocating the same large tensors stops faulting pages in."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dissect_core.heap import retain_freed_memory

PROBE = """
import resource, sys, torch
from dissect_core.heap import retain_freed_memory
if sys.argv[1] == "retain":
    assert retain_freed_memory()
def batch():  # three temporaries of 20, 28 and 12 MB alive at once, then freed: a dissection batch in small
    a = torch.ones(5 << 20); b = torch.ones(7 << 20); c = torch.ones(3 << 20); return float(a.sum() + b.sum() + c.sum())
batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    batch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> int:
    result = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    return int(result.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc")
def test_retained_memory_is_reused_without_page_faults() -> None:
    default, retained = faults("default"), faults("retain")
    assert retained * 2 < default, (default, retained)  # measured here: 17,400 vs 7,168 minor faults


def test_it_is_a_no_op_answer_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert retain_freed_memory() is False
