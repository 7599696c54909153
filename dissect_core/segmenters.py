"""The segmenter interface dissection and causal measurement use, and its scene-world implementation.

A segmenter is any callable mapping images in [-1, 1] (N, 3, H, W) to label maps (N, C, H', W') of
global label numbers (0 = no label), one channel per category, plus a description of its labels:
``labels[i] = (name, category)`` for label number ``i`` (``labels[0]`` is ``("-", "")``). Plug in
your own by writing such a class; ``load_segmenter`` imports ``"package.module:factory"`` specs given
on the command line, and ``hf:<model id or dir>`` loads a real-scene segmenter through ``transformers``
(``dissect_core.hf_segmenter``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from models.judge import JudgeSegmenter
    from models.segmenter import WorldSegmenter

__all__ = ["Segmenter", "WorldSegmenterAdapter", "load_segmenter", "category_index"]


@runtime_checkable
class Segmenter(Protocol):
    @property
    def labels(self) -> Sequence[tuple[str, str]]: ...

    @property
    def categories(self) -> Sequence[str]: ...

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def category_index(segmenter: Segmenter) -> list[int]:
    """``category_of`` list for ``IoUTally``: category position of each label (−1 for label 0)."""
    positions = {c: i for i, c in enumerate(segmenter.categories)}
    return [-1 if number == 0 else positions[category] for number, (_, category) in enumerate(segmenter.labels)]


class WorldSegmenterAdapter:
    """The zoo segmenter as a ``Segmenter``: object, material and colour channels."""

    categories = ("object", "material", "color")

    def __init__(self, model: WorldSegmenter | JudgeSegmenter, identity: str = "world64/segmenter") -> None:
        from models.world.labels import LABELS

        self.model = model
        self.identity = identity
        self.input_size = int(getattr(model, "input_size", 64))
        self.labels = [(label.name, label.category) for label in LABELS if label.category != "scene"]
        self.labels[0] = ("-", "")

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Label maps at the segmenter's own resolution; smaller images (early training snapshots)
        are upsampled bilinearly first."""
        if images.shape[-1] != self.input_size:
            images = torch.nn.functional.interpolate(images, size=(self.input_size, self.input_size),
                                                     mode="bilinear", align_corners=False)
        return self.model.segment(images)

    def concept_probability(self, images: torch.Tensor, number: int) -> torch.Tensor:
        """(N, H', W') differentiable probability of label ``number`` (an object or material) per pixel:
        what learned insertion maximises."""
        from models.segmenter import class_label_numbers

        if images.shape[-1] != self.input_size:
            images = torch.nn.functional.interpolate(images, size=(self.input_size, self.input_size),
                                                     mode="bilinear", align_corners=False)
        category = self.labels[number][1]
        if category not in ("object", "material"):
            raise ValueError(f"label {self.labels[number][0]!r} ({category}) has no learned head")
        index = int((class_label_numbers(category) == number).nonzero()[0, 0])
        return self.model(images)[category].float().softmax(1)[:, index]


def load_segmenter(spec: str, device: str = "cpu", zoo_dir: str | os.PathLike[str] | None = None) -> Segmenter:
    """A zoo id (``world64/segmenter``), ``hf:<model id or local dir>`` (a ``transformers`` semantic
    segmentation model, local only) or ``package.module:factory`` (called with ``device=``)."""
    if spec.startswith("hf:"):
        from dissect_core.hf_segmenter import load_hf_segmenter

        if not spec[3:].strip():
            raise ValueError("segmenter 'hf:' needs a model id or a directory (hf:nvidia/segformer-b0-...)")
        return load_hf_segmenter(spec[3:].strip(), device)
    if ":" in spec:
        module_name, _, attr = spec.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"segmenter {spec!r}: cannot import ({exc})") from exc
        segmenter = factory(device=device)
        if not isinstance(segmenter, Segmenter):
            raise ValueError(f"segmenter {spec!r}: needs labels, categories and __call__")
        return segmenter
    from models.zoo import load_model

    return WorldSegmenterAdapter(load_model(spec, device, zoo_dir), identity=spec)
