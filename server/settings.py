"""Server settings from the environment (prefix ``GANPAINT_``) and command-line flags; no globals.

Every value has a safe default: bind to 127.0.0.1, websocket Origin allow-list of the server's own
address, CORS off, bounded queue, message and body sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from dissect_core.gandissect import DissectConfig

DEFAULT_MAX_BATCH = 32
"""Most requests one forward pass renders (the executor's default too)."""

__all__ = ["Settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GANPAINT_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    default_model: str = "world128"
    zoo_dir: Path | None = None
    """Where zoo models live (default: the zoo shipped in the package)."""
    models_dir: Path | None = None
    """Operator directory of extra generator checkpoints (.pth / .safetensors), one model per file."""
    segmenter: str | None = "world64/segmenter"
    """Segmenter used to dissect extra models: zoo id or ``package.module:factory``; empty = none."""
    classifier: str | None = None
    """Zoo id of the classifier the CAM, feature and unit pages explain; default: the served model's own
    (``world128/classifier`` for the default model: trained on the same world)."""
    cache_dir: Path = Path.home() / ".cache" / "ganpaint"
    device: str = "auto"
    threads: int | None = Field(None, ge=1, le=256)

    token: SecretStr | None = None
    """When set, websocket clients must send it (``Sec-WebSocket-Protocol: ganpaint.v1, token.<value>``)
    and REST clients as ``Authorization: Bearer <value>``."""
    session_ttl_s: float = Field(12 * 3600, ge=60, le=30 * 24 * 3600)
    """How long a browser's sign-in (the session cookie of ``POST /api/login``) lasts."""
    login_per_minute: float = Field(10, gt=0, le=10_000)
    """Sign-in attempts a minute one client address may make (5 at once), in token mode."""
    allowed_origins: list[str] = Field(default_factory=list)
    """Websocket Origin allow-list; empty means the server's own http://host:port (and localhost)."""
    cors_origins: list[str] = Field(default_factory=list)

    queue_size: int = Field(64, ge=1, le=10_000)
    max_batch: int = Field(DEFAULT_MAX_BATCH, ge=1, le=256)
    batch_wait_ms: float = Field(2.0, ge=0, le=1000)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Precision of rendering after the edit layer. ``auto``: bfloat16 where the hardware has it
    natively (CUDA, CPUs with AMX / AVX512-BF16), about twice as fast on such CPUs, pixels within a
    level or two of float32; ``fp32`` for output identical to ``ganpaint render``."""
    deadline_s: float = Field(10.0, gt=0, le=600)
    feature_cache_items: int = Field(512, ge=0, le=1_000_000)
    incremental: bool = True
    """Render a painter's next edit by recomputing only the windows of later layers its change reaches
    (``models.incremental``); same pixels as a full forward up to float rounding."""
    incremental_cache_mb: int = Field(1024, ge=0, le=1_000_000)
    """Memory for the per-painter layer outputs incremental rendering reuses (least recent dropped)."""
    incremental_max_fraction: float = Field(0.6, gt=0, le=1)
    """A change reaching more than this share of the suffix's work renders in full (batched)."""
    max_body_bytes: int = Field(1 << 20, ge=1024)
    """Largest JSON request body (recipes, job parameters)."""
    max_upload_bytes: int = Field(20 << 20, ge=1024, le=1 << 30)
    """Largest picture upload (a phone photo is 3-12 MB); pictures are downscaled on the server."""
    upload_max_items: int = Field(256, ge=1, le=1_000_000)
    """Uploaded pictures kept on disk (the least recently painted beyond it are removed)."""
    upload_ttl_s: float = Field(7 * 24 * 3600, ge=60, le=365 * 24 * 3600)
    """An upload not painted for this long is removed."""
    invert_refine_steps: int = Field(100, ge=0, le=10_000)
    """Adam steps refining an upload's edit-layer activations (ganseeing's interactive setting: 100)."""
    invert_adapt_steps: int = Field(300, ge=0, le=10_000)
    """Adam steps fitting the generator's adaptation maps to an upload (the paper: 1000 on a GPU)."""
    ws_max_bytes: int = Field(1 << 20, ge=1024)
    ws_messages_per_s: float = Field(120.0, gt=0, le=100_000)
    """Messages a second one painting connection is read at, past its burst (a drag sends about 60)."""
    ws_message_burst: int = Field(60, ge=1, le=100_000)

    redis_url: str | None = None
    """``redis://host:port/db``: keep job records in Redis, shared by every server process (replicas
    behind one address, ``ganpaint serve --cluster``); default: SQLite beside the job results.
    Results, tables and uploads then belong on a volume the processes share (``cache_dir``)."""
    job_runner: Literal["local", "ray"] = "local"
    """Where jobs compute: in this process (default), or as Ray tasks on the cluster this process is
    part of (``ganpaint serve --cluster`` sets it): a dissection's passes split into shards over the
    cluster's workers and merged exactly, an inversion on a worker of its own. Progress, cancel and
    records stay with the jobs API."""
    ray_task_cpus: float = Field(1.0, gt=0, le=256)
    """CPUs one job task reserves on the cluster (its torch threads)."""
    ray_task_gpus: float = Field(0.0, ge=0, le=16)
    """GPUs (or a fraction) one job task reserves; tasks then compute on the GPU."""
    job_workers: int = Field(1, ge=1, le=16)
    """Jobs (feature visualisation, dissections) running at once; more wait in order."""
    dissect_samples: int = Field(2000, ge=10, le=100_000)
    causal_samples: int = Field(64, ge=0, le=10_000)
    table_builds: Literal["edit_layer", "editable", "none"] = "edit_layer"
    """Which dissection tables the server may build (as jobs): each model's edit layer (default; the
    shipped default model never needs one), any layer before the output, or none. Reading a table
    never builds one."""
    checkpoint_every_s: float = Field(30.0, gt=0, le=3600)
    """How often a table build saves its statistics (a restart continues from the last save)."""
    dissect_threshold: Literal["quantile", "iqr"] = DissectConfig.threshold  # type: ignore[assignment]
    """How tables built by the server set unit levels (see ``dissect_core.iqr``)."""

    def origin_allowed(self, origin: str | None) -> bool:
        """Exact match against the allow-list (non-browser clients without Origin pass)."""
        if origin is None:
            return True
        allowed = self.allowed_origins or [
            f"http://{self.host}:{self.port}", f"http://localhost:{self.port}", f"http://127.0.0.1:{self.port}",
        ]
        return origin in allowed
