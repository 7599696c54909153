"""Uploaded pictures on disk: content-addressed, owned, bounded in number and age.

An upload is a picture decoded on arrival (``server.pictures``), resized to one model's resolution and
stored as ``uploads/<id>/picture.png`` with ``meta.json``. The id is a hash of the model and the
decoded pixels, so the same picture uploaded twice is one upload. Beside the picture live what the
model makes of it: ``encoded.safetensors`` (the encoder's edit-layer activations, made at upload) and
``inverted.safetensors`` (refined activations and the adaptation maps, made by the inversion job).

Owners are opaque keys (a hash of the browser's owner cookie): listing shows only the caller's
uploads; deleting removes the caller as an owner, and the files with the last owner. Anyone who holds
an id may paint it (share links), which is why ids are 128-bit hashes. Uploads unused for ``ttl_s``
and the oldest beyond ``max_items`` are removed when new ones arrive.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from models.imaging import to_png_bytes

__all__ = ["UploadStore", "PictureSource", "UPLOAD_PATTERN", "ENCODED", "INVERTED", "owner_key"]

UPLOAD_PATTERN = r"^[0-9a-f]{32}$"
PICTURE = "picture.png"
META = "meta.json"
ENCODED = "encoded.safetensors"
INVERTED = "inverted.safetensors"


@dataclass(frozen=True)
class PictureSource:
    """What painting an upload needs: its picture, its edit-layer activations, the adaptation maps."""

    id: str
    model: str
    stage: str
    """``encoded`` (the encoder's preview) or ``inverted`` (refined and adapted)."""
    r: torch.Tensor
    """(C, h, w) edit-layer activations."""
    picture: np.ndarray
    """(H, W, 3) uint8: the upload's own pixels."""
    multipliers: dict[str, torch.Tensor] | None = field(default=None, compare=False)
    """Layer name -> (1, C, H, W) map its output is multiplied by (None before adaptation)."""


def owner_key(secret: str) -> str:
    """What the store keeps of an owner's cookie: a hash, never the cookie itself."""
    return hashlib.sha256(f"ganpaint-owner:{secret}".encode()).hexdigest()[:32]


class UploadStore:
    def __init__(self, root: Path, max_items: int = 256, ttl_s: float = 7 * 24 * 3600,
                 clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root)
        self.max_items, self.ttl_s, self._clock = max_items, ttl_s, clock
        self._lock = threading.RLock()
        self.max_sources = 32
        self._sources: dict[tuple[str, str, int, str], PictureSource] = {}
        self._touched: dict[str, float] = {}
        """When painting last marked each upload used (``touch`` writes it to disk once a minute)."""
        """Loaded picture sources (painting reads one per render), newest last."""

    # --- adding and finding ---------------------------------------------------------------------
    def add(self, model: str, pixels: np.ndarray, owner: str, name: str = "") -> tuple[dict[str, Any], bool]:
        """Store a decoded picture (H, W, 3) uint8 for ``model``; returns (its meta, whether it is new)."""
        png = to_png_bytes(np.ascontiguousarray(pixels, dtype=np.uint8))
        upload_id = hashlib.sha256(model.encode() + b"\0" + png).hexdigest()[:32]
        with self._lock:
            directory = self.root / upload_id
            meta = self._read_meta(directory)
            now = self._clock()
            if meta is not None:
                if owner not in meta["owners"]:
                    meta["owners"].append(owner)
                meta["used"] = now
                self._write_meta(directory, meta)
                return meta, False
            self.root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=self.root, prefix=".new-"))
            try:
                (staging / PICTURE).write_bytes(png)
                meta = {"id": upload_id, "model": model, "width": int(pixels.shape[1]), "height": int(pixels.shape[0]),
                        "name": name[:120], "created": now, "used": now, "owners": [owner]}
                (staging / META).write_text(json.dumps(meta))
                os.replace(staging, directory)
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
            self._purge(keep=upload_id)
            return meta, True

    def get(self, upload_id: str) -> dict[str, Any] | None:
        """The upload's meta, or None (never stored, removed, or expired: then removed now)."""
        with self._lock:
            directory = self.root / upload_id
            meta = self._read_meta(directory)
            if meta is None:
                return None
            if self._clock() - meta["used"] > self.ttl_s:
                self._delete(directory)
                return None
            return meta

    def touch(self, upload_id: str) -> bool:
        """Mark an upload as used now (painting it keeps it alive), at most once a minute on disk;
        False when it has expired (then it is removed) or is gone."""
        now = self._clock()
        with self._lock:
            if now - self._touched.get(upload_id, -math.inf) < 60:
                return True
            meta = self.get(upload_id)
            if meta is None:
                self._touched.pop(upload_id, None)
                return False
            meta["used"] = now
            self._write_meta(self.root / upload_id, meta)
            self._touched[upload_id] = now
            return True

    def picture(self, upload_id: str) -> np.ndarray:
        with Image.open(self.root / upload_id / PICTURE) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)

    def path(self, upload_id: str, name: str) -> Path:
        return self.root / upload_id / name

    def list(self, owner: str) -> list[dict[str, Any]]:
        """The owner's uploads, newest first (without the other owners)."""
        with self._lock:
            self._purge()
            found = []
            for directory in self.root.glob("*") if self.root.is_dir() else []:
                meta = self._read_meta(directory)
                if meta is not None and owner in meta["owners"]:
                    found.append(meta)
        found.sort(key=lambda m: m["created"], reverse=True)
        return [self.public(m) for m in found]

    @staticmethod
    def public(meta: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in meta.items() if k != "owners"}

    def remove(self, upload_id: str, owner: str) -> bool:
        """Drop ``owner`` from the upload (the files go with the last owner); False if not theirs."""
        with self._lock:
            directory = self.root / upload_id
            meta = self._read_meta(directory)
            if meta is None or owner not in meta["owners"]:
                return False
            meta["owners"].remove(owner)
            if meta["owners"]:
                self._write_meta(directory, meta)
            else:
                self._delete(directory)
            return True

    # --- what the model makes of it ---------------------------------------------------------------
    def save_tensors(self, upload_id: str, name: str, tensors: Mapping[str, torch.Tensor],
                     metadata: Mapping[str, str] | None = None) -> None:
        """Write ``name`` (safetensors) atomically into the upload, if the upload still exists."""
        directory = self.root / upload_id
        if not directory.is_dir():
            return
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        os.close(fd)
        try:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=dict(metadata or {}))
            os.replace(tmp, directory / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def source(self, upload_id: str, device: str | torch.device = "cpu") -> PictureSource | None:
        """The upload as painting sees it (inverted when the inversion has finished, else encoded);
        None when the upload or its encoding is missing. Cached until its files change: a render of a
        cached upload costs two ``stat`` calls, and marks it used (``touch``)."""
        for stage, name in (("inverted", INVERTED), ("encoded", ENCODED)):
            path = self.root / upload_id / name
            try:
                stamp = path.stat().st_mtime_ns
            except OSError:
                continue
            key = (upload_id, stage, stamp, str(device))
            with self._lock:
                cached = self._sources.get(key)
            if cached is not None:
                return cached if self.touch(upload_id) else None
            meta = self.get(upload_id)
            if meta is None or not self.touch(upload_id):
                return None
            tensors = load_file(str(path), device=str(device))
            from models.inversion import Adaptation

            maps = Adaptation.from_state_dict(tensors, device).multipliers() if stage == "inverted" else None
            source = PictureSource(upload_id, meta["model"], stage, tensors["r"].float()[0], self.picture(upload_id),
                                   maps or None)
            with self._lock:
                self._sources = {k: v for k, v in self._sources.items() if k[0] != upload_id}
                self._sources[key] = source
                while len(self._sources) > self.max_sources:
                    self._sources.pop(next(iter(self._sources)))
            return source
        return None

    def load_tensors(self, upload_id: str, name: str) -> dict[str, torch.Tensor] | None:
        path = self.root / upload_id / name
        if not path.is_file():
            return None
        return load_file(str(path))

    # --- bookkeeping -----------------------------------------------------------------------------
    def _read_meta(self, directory: Path) -> dict[str, Any] | None:
        try:
            meta = json.loads((directory / META).read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) and isinstance(meta.get("owners"), list) else None

    def _write_meta(self, directory: Path, meta: Mapping[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
        with os.fdopen(fd, "w") as handle:
            json.dump(meta, handle)
        os.replace(tmp, directory / META)

    def _delete(self, directory: Path) -> None:
        """Remove an upload's files and what is remembered of it in memory (call with the lock held)."""
        shutil.rmtree(directory, ignore_errors=True)
        self._sources = {k: v for k, v in self._sources.items() if k[0] != directory.name}
        self._touched.pop(directory.name, None)

    def _purge(self, keep: str | None = None) -> None:
        """Remove expired uploads, then the least recently used beyond ``max_items`` (never ``keep``)."""
        if not self.root.is_dir():
            return
        now = self._clock()
        live = []
        for directory in self.root.iterdir():
            if directory.name.startswith(".new-"):
                if now - directory.stat().st_mtime > 3600:  # a crash while storing
                    shutil.rmtree(directory, ignore_errors=True)
                continue
            meta = self._read_meta(directory)
            if meta is None:
                continue
            if now - meta["used"] > self.ttl_s and directory.name != keep:
                self._delete(directory)
                continue
            live.append((meta["used"], directory))
        live.sort()
        excess = len(live) - self.max_items
        for _, directory in live:
            if excess <= 0:
                break
            if directory.name != keep:
                self._delete(directory)
                excess -= 1
