"""Real-scene segmenters from Hugging Face ``transformers`` as ``Segmenter``s (``--segmenter hf:<id|dir>``).

GANPaint's brushes came from dissecting the released generators with a segmenter of real scenes.
This adapter loads any ``AutoModelForSemanticSegmentation`` (SegFormer, UperNet, DPT, BEiT, ... trained
on ADE20K) from a local directory or the local Hugging Face cache, never from the network: fetching is a
separate command the user runs on purpose (``ganpaint zoo fetch-segmenter ID``). Images are resized to
the model's native input size and normalised as its image processor says; the label map comes back at
the generated image's size (dissection resizes it to its own grid).

The model's labels are mapped to the brush concepts by ``BRUSH_CONCEPTS`` (ADE20K ``tree`` -> ``tree``,
``windowpane`` -> ``window``, ``streetlight`` -> ``lamp``, ...); labels not in the table keep their own
(first) name. Everything is one category, ``object``: these models know no materials or colours.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

__all__ = ["BRUSH_CONCEPTS", "HFSegmenter", "load_hf_segmenter", "fetch_segmenter", "label_name",
           "MISSING_EXTRA"]

MISSING_EXTRA = "hf: segmenters need the optional extra: pip install 'ganpaint[real]' (transformers)"

BRUSH_CONCEPTS: dict[str, str] = {
    # ADE20K (150-class SceneParsing and the full label set) name -> GANPaint brush concept
    "tree": "tree", "palm": "tree",
    "grass": "grass",
    "sky": "sky",
    "cloud": "cloud",
    "building": "building", "house": "building", "edifice": "building",
    "door": "door", "double door": "door",
    "windowpane": "window", "window": "window",
    "tower": "tower",
    "dome": "dome",
    "streetlight": "lamp", "street lamp": "lamp", "lamp": "lamp",
    "mountain": "mountain", "hill": "mountain",
    "water": "water", "sea": "water", "river": "water", "lake": "water",
    "road": "road", "path": "road",
}
"""How a segmenter's label names become brush concepts (documented in docs/real-models.md). Several
model labels may share one concept (ADE20K ``building`` and ``house`` both paint ``building``)."""


def label_name(raw: str) -> str:
    """The first name of a label (``"windowpane;window"`` or ``"palm, palm tree"`` -> ``windowpane``/``palm``),
    lower case, trimmed: id2label entries of ADE20K models carry aliases and trailing spaces."""
    for separator in (";", ","):
        raw = raw.split(separator)[0]
    return raw.strip().lower()


class HFSegmenter:
    """A ``transformers`` semantic-segmentation model behind the ``Segmenter`` interface."""

    categories = ("object",)

    def __init__(self, model: torch.nn.Module, processor: Any, identity: str,
                 device: str | torch.device = "cpu") -> None:
        self.model = model.eval().to(device)
        self.device = torch.device(device)
        self.identity = identity
        config: Any = model.config
        id2label = {int(k): str(v) for k, v in config.id2label.items()}
        count = int(config.num_labels)
        names = [label_name(id2label.get(i, f"label{i}")) for i in range(count)]
        concepts = [BRUSH_CONCEPTS.get(name, name) for name in names]
        unique = list(dict.fromkeys(concepts))
        self.labels: list[tuple[str, str]] = [("-", "")] + [(name, "object") for name in unique]
        number = {name: i + 1 for i, name in enumerate(unique)}
        self.class_to_label = torch.tensor([number[c] for c in concepts], dtype=torch.long)
        """Model class index -> our label number."""
        self.model_labels = names
        self.input_size = _native_size(processor)
        mean, std = _normalisation(processor)
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.metadata = {"segmenter": identity, "kind": "transformers", "architecture": type(model).__name__,
                         "input_size": list(self.input_size), "categories": ["object"],
                         "note": "object labels only (no materials or colours); labels mapped to brush "
                                 "concepts by dissect_core.hf_segmenter.BRUSH_CONCEPTS"}

    def __repr__(self) -> str:
        return f"HFSegmenter({self.identity!r}, {len(self.labels) - 1} labels, input {self.input_size})"

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, classes, H, W) class scores at the input image's size, from images in [-1, 1]."""
        size = images.shape[-2:]
        x = images.to(self.device, torch.float32)
        x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True) \
            if tuple(x.shape[-2:]) != self.input_size else x
        x = ((x + 1) / 2 - self._mean) / self._std  # [0, 1] pixels, then the processor's normalisation
        outputs = self.model(pixel_values=x)
        scores = _semantic_scores(outputs)
        return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)

    chunk = 8
    """Images per model call: class scores at 256 x 256 for 150 classes are 39 MB per image."""

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) label numbers (``labels`` index) at the input image's size."""
        with torch.no_grad():
            classes = torch.cat([self.logits(part).argmax(1) for part in images.split(self.chunk)])
        return self.class_to_label.to(classes.device)[classes][:, None]

    def concept_probability(self, images: torch.Tensor, number: int) -> torch.Tensor:
        """(N, H, W) differentiable probability of label ``number`` (summed over the model classes that
        map to it): what learned insertion maximises."""
        if not 0 < number < len(self.labels):
            raise ValueError(f"label number {number} is not one of this segmenter's labels")
        probability = self.logits(images).float().softmax(1)
        members = (self.class_to_label == number).nonzero()[:, 0].to(probability.device)
        return probability[:, members].sum(1)


def _native_size(processor: Any) -> tuple[int, int]:
    size = getattr(processor, "crop_size", None) if getattr(processor, "do_center_crop", False) else None
    size = size or getattr(processor, "size", None) or {"height": 512, "width": 512}
    if isinstance(size, int):
        return (size, size)
    if not isinstance(size, dict):  # transformers' SizeDict
        size = {k: getattr(size, k) for k in ("height", "width", "shortest_edge") if getattr(size, k, None)}
    if size.get("height") and size.get("width"):
        return (int(size["height"]), int(size["width"]))
    if size.get("shortest_edge"):
        edge = int(size["shortest_edge"])
        return (edge, edge)
    raise ValueError(f"cannot read the model's input size from its image processor ({size!r})")


def _normalisation(processor: Any) -> tuple[Sequence[float], Sequence[float]]:
    if not getattr(processor, "do_normalize", True):
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    mean = getattr(processor, "image_mean", None) or (0.485, 0.456, 0.406)
    std = getattr(processor, "image_std", None) or (0.229, 0.224, 0.225)
    if len(mean) != 3 or len(std) != 3:
        raise ValueError("the image processor's normalisation is not per RGB channel")
    return [float(m) for m in mean], [float(s) for s in std]


def _semantic_scores(outputs: Any) -> torch.Tensor:
    """Per-class scores from a semantic head (``logits``) or a mask-classification head (Mask2Former,
    MaskFormer: class probabilities times mask probabilities, as their semantic post-processing does)."""
    logits = getattr(outputs, "logits", None)
    if logits is not None:
        return logits
    classes = getattr(outputs, "class_queries_logits", None)
    masks = getattr(outputs, "masks_queries_logits", None)
    if classes is None or masks is None:
        raise ValueError("the model returns neither semantic logits nor class/mask queries")
    probabilities = classes.softmax(-1)[..., :-1]  # the last class is "no object"
    return torch.einsum("nqc,nqhw->nchw", probabilities, masks.sigmoid())


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise ValueError(MISSING_EXTRA) from exc
    return transformers


def load_hf_segmenter(source: str, device: str = "cpu") -> HFSegmenter:
    """``source`` is a local directory (``save_pretrained`` output) or a model id already in the local
    Hugging Face cache. Never downloads: a missing model names the fetch command."""
    transformers = _transformers()
    path = Path(source).expanduser()
    location = str(path) if path.is_dir() else source
    try:
        processor = transformers.AutoImageProcessor.from_pretrained(location, local_files_only=True)
        try:
            model = transformers.AutoModelForSemanticSegmentation.from_pretrained(location, local_files_only=True)
        except ValueError:  # mask-classification models (Mask2Former) are "universal segmentation"
            model = transformers.AutoModelForUniversalSegmentation.from_pretrained(location, local_files_only=True)
    except OSError as exc:
        if path.is_dir():
            raise ValueError(f"segmenter hf:{source}: the directory holds no transformers segmentation model "
                             f"({str(exc).splitlines()[0]})") from exc
        raise ValueError(f"segmenter hf:{source} is not on this machine; fetch it once with "
                         f"`ganpaint zoo fetch-segmenter {source}` or pass a local directory "
                         "(nothing is downloaded at serve time)") from exc
    return HFSegmenter(model, processor, identity=f"hf:{source}", device=device)


def fetch_segmenter(model_id: str, cache_dir: str | None = None) -> Path:
    """Download a segmentation model into the local Hugging Face cache (the one explicit network step);
    returns the local snapshot directory."""
    _transformers()
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model_id, cache_dir=cache_dir,
                                  ignore_patterns=["*.h5", "*.msgpack", "*.onnx", "*.ot", "tf_*", "flax_*"]))
