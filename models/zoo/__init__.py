"""The model zoo: committed weights + model cards, referred to by id (never by a client path).

Each zoo model is a directory ``models/zoo/<name>/`` holding, per component, a weight file and a
card ``<component>.json`` with at least ``{"id", "kind", "file"}``. Ids are ``<name>`` for the
generator and ``<name>/<component>`` for the others (``world64/segmenter``, ``world64/classifier``).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

__all__ = [
    "ZOO_DIR", "DEFAULT_GENERATOR", "ZooEntry", "ZooError", "list_zoo", "get_entry", "resolve_weights", "load_model",
    "companion_id", "model_world",
]

ZOO_DIR = Path(__file__).resolve().parent
DEFAULT_GENERATOR = "world128"
_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}(/[a-z0-9][a-z0-9_-]{0,63})?")


class ZooError(LookupError):
    """An id that is not in the zoo, or a zoo entry whose files are missing or damaged."""


@dataclass(frozen=True)
class ZooEntry:
    """One zoo model: its id, kind (generator / segmenter / classifier), weight file and card."""

    id: str
    kind: str
    weights: Path
    card: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def _read_card(path: Path) -> ZooEntry | None:
    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(card, dict) or not {"id", "kind", "file"} <= card.keys():
        return None
    return ZooEntry(id=str(card["id"]), kind=str(card["kind"]), weights=path.parent / str(card["file"]), card=card)


def default_zoo_dir() -> Path:
    """``$GANPAINT_ZOO_DIR`` when set, else the zoo shipped in this package."""
    override = os.environ.get("GANPAINT_ZOO_DIR")
    return Path(override) if override else ZOO_DIR


def list_zoo(zoo_dir: str | os.PathLike[str] | None = None) -> dict[str, ZooEntry]:
    """All entries found under the zoo directory, by id."""
    root = Path(zoo_dir) if zoo_dir is not None else default_zoo_dir()
    entries: dict[str, ZooEntry] = {}
    for card_path in sorted(root.glob("*/*.json")):
        entry = _read_card(card_path)
        if entry is not None:
            entries[entry.id] = entry
    return entries


def get_entry(model_id: str, zoo_dir: str | os.PathLike[str] | None = None) -> ZooEntry:
    """The entry for ``model_id``; ``ZooError`` lists the known ids when it is not there."""
    if not isinstance(model_id, str) or not _ID_PATTERN.fullmatch(model_id):
        raise ZooError(f"{model_id!r} is not a valid zoo id (lowercase name, optionally /component)")
    entries = list_zoo(zoo_dir)
    if model_id not in entries:
        known = ", ".join(sorted(entries)) or "none installed"
        raise ZooError(f"no zoo model {model_id!r}; known ids: {known}")
    entry = entries[model_id]
    if not entry.weights.is_file():
        raise ZooError(f"zoo model {model_id!r}: weight file {entry.weights} is missing")
    return entry


def companion_id(generator_id: str, component: str, zoo_dir: str | os.PathLike[str] | None = None) -> str:
    """The zoo id of a generator's ``segmenter`` or ``classifier``: the one its card names (trained on
    the same world), else ``<name>/<component>``."""
    try:
        card = get_entry(generator_id, zoo_dir).card
    except ZooError:
        card = {}
    named = card.get("companions", {}).get(component) if isinstance(card.get("companions"), dict) else None
    return str(named) if named else f"{generator_id.split('/')[0]}/{component}"


def model_world(model_id: str, zoo_dir: str | os.PathLike[str] | None = None) -> str:
    """The scene world a zoo model was trained on (its card's ``world``; ``classic`` when absent)."""
    try:
        return str(get_entry(model_id, zoo_dir).card.get("world", "classic"))
    except ZooError:
        return "classic"


def resolve_weights(spec: str, zoo_dir: str | os.PathLike[str] | None = None) -> Path:
    """A zoo id or a path to a weight file -> the weight file (command-line use only)."""
    candidate = Path(spec).expanduser()
    if candidate.is_file():
        return candidate
    looks_like_path = os.sep in spec and not _ID_PATTERN.fullmatch(spec) or spec.endswith(
        (".pth", ".pt", ".safetensors")
    )
    if looks_like_path:
        raise ZooError(f"{spec}: no such file")
    return get_entry(spec, zoo_dir).weights


def load_model(model_id: str, device: str = "cpu", zoo_dir: str | os.PathLike[str] | None = None) -> Any:
    """Load a zoo model by id, in eval mode on ``device`` (fp32 compute whatever the stored dtype)."""
    from models.checkpoints import CheckpointError, for_inference, load_generator, read_weights

    entry = get_entry(model_id, zoo_dir)
    if entry.kind == "generator":
        return load_generator(entry.weights, device=device)
    arch = entry.card.get("architecture", {})
    model: torch.nn.Module
    if entry.kind == "segmenter":
        if arch.get("class") == "models.judge.JudgeSegmenter":
            from models.judge import JudgeSegmenter

            model = JudgeSegmenter(width=int(arch.get("width", 48)), input_size=int(arch.get("input", 128)))
        else:
            from models.segmenter import WorldSegmenter

            model = WorldSegmenter(width=int(arch.get("width", 32)))
    elif entry.kind == "classifier":
        from models.classifier import SceneClassifier

        model = SceneClassifier(width=int(arch.get("width", 32)))
    elif entry.kind == "encoder":
        from models.encoder import LayerEncoder

        model = LayerEncoder(int(arch["out_channels"]), int(arch["out_size"]), int(arch["input"]), int(arch["width"]))
    else:
        raise ZooError(f"zoo model {model_id!r} has unknown kind {entry.kind!r}")
    state = read_weights(entry.weights)
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v  # type: ignore[attr-defined]
                               for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{entry.weights}: does not fit a {entry.kind} ({str(exc).splitlines()[0]})") from exc
    return for_inference(model.to(device))
