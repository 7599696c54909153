"""Strict request and message models shared by REST and the websocket (no coercion, no extra fields).

The edit **recipe** is the one contract for painting, stateless rendering, downloads and share
links: ``{v, model, layer, sample | z | upload, strokes: [{brush | units, action, strength, mask}]}``.
Masks are resolution independent bitmaps (any size up to 512 x 512), sent bit-packed and base64
encoded (``numpy.packbits`` order: row-major, most significant bit first), so a 64 x 64 stroke
costs 684 characters.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from models.samples import MAX_SAMPLE_ID
from server.uploads import UPLOAD_PATTERN

__all__ = [
    "MaskSpec", "StrokeSpec", "Recipe", "EditMessage", "ErrorMessage", "ImageHeader",
    "ID_PATTERN", "LAYER_PATTERN", "MAX_MASK_SIDE", "MAX_STROKES",
]

ID_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"
LAYER_PATTERN = r"^(layer[1-9][0-9]?|output_[0-9]{1,4}x[0-9]{1,4})$"
CONCEPT_PATTERN = r"^[a-z][a-z0-9_ -]{0,47}$"
MAX_MASK_SIDE = 512
MAX_STROKES = 64
MAX_UNITS = 1024


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class MaskSpec(Strict):
    """A bitmap over the whole image, bit-packed row-major, base64 encoded."""

    width: int = Field(ge=1, le=MAX_MASK_SIDE)
    height: int = Field(ge=1, le=MAX_MASK_SIDE)
    data: str = Field(max_length=((MAX_MASK_SIDE * MAX_MASK_SIDE + 7) // 8 * 4 // 3) + 8)
    soft: bool = False
    """Mean-pool to the layer grid (partial cells get partial strength) instead of max-pool."""

    _bits: torch.Tensor | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _decode(self) -> MaskSpec:
        self._bits = self._unpack()  # decoded once, here; to_tensor hands out this tensor
        return self

    def to_tensor(self) -> torch.Tensor:
        """(height, width) float tensor of 0/1 (shared: do not modify it in place)."""
        return self._bits if self._bits is not None else self._unpack()

    def _unpack(self) -> torch.Tensor:
        try:
            raw = base64.b64decode(self.data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("mask data is not valid base64") from exc
        expected = (self.width * self.height + 7) // 8
        if len(raw) != expected:
            raise ValueError(f"mask data holds {len(raw)} bytes, a {self.width}x{self.height} mask needs {expected}")
        bits = np.unpackbits(np.frombuffer(raw, np.uint8))[: self.width * self.height]
        return torch.from_numpy(bits.reshape(self.height, self.width).astype(np.float32))

    @classmethod
    def from_array(cls, mask: np.ndarray, soft: bool = False) -> MaskSpec:
        """Encode a boolean (H, W) array (helper for clients and tests)."""
        array = np.asarray(mask).astype(bool)
        data = base64.b64encode(np.packbits(array.flatten()).tobytes()).decode()
        return cls(width=array.shape[1], height=array.shape[0], data=data, soft=soft)


class StrokeSpec(Strict):
    """One stroke: a brush (concept name) or explicit units, an action, a strength and a mask."""

    brush: Annotated[str, Field(pattern=CONCEPT_PATTERN)] | None = None
    units: list[Annotated[int, Field(ge=0, lt=MAX_UNITS)]] | None = Field(None, min_length=1, max_length=MAX_UNITS)
    action: Literal["add", "remove", "erase"] = "add"
    strength: float = Field(0.5, ge=0.0, le=1.0)
    mask: MaskSpec
    place: bool = True
    """Place an object brush where the GAN draws that object inside the mask (a dome: two cells wide,
    on the roof below the painted sky; see dissect_core.placement); false paints the mask as drawn."""

    @model_validator(mode="after")
    def _one_source(self) -> StrokeSpec:
        if self.action != "erase" and (self.brush is None) == (self.units is None):
            raise ValueError("a stroke needs exactly one of 'brush' or 'units' (erase needs neither)")
        return self


class Recipe(Strict):
    v: Literal[1] = 1
    model: str = Field(pattern=ID_PATTERN)
    layer: str | None = Field(None, pattern=LAYER_PATTERN)
    """Edit layer; default: the model's edit layer (layer4 for ProGAN)."""
    sample: int | None = Field(None, ge=0, le=MAX_SAMPLE_ID)
    z: list[Annotated[float, Field(ge=-100.0, le=100.0, allow_inf_nan=False)]] | None = Field(
        None, min_length=1, max_length=1024)
    upload: str | None = Field(None, pattern=UPLOAD_PATTERN)
    """An uploaded picture (``POST /api/uploads``) painted instead of a sample: its inverted edit-layer
    activations, the generator adapted to it, composited into the picture outside the edit's band."""
    strokes: list[StrokeSpec] = Field(default_factory=list, max_length=MAX_STROKES)

    @model_validator(mode="after")
    def _one_latent(self) -> Recipe:
        if sum(source is not None for source in (self.sample, self.z, self.upload)) != 1:
            raise ValueError("a recipe needs exactly one of 'sample', 'z' or 'upload'")
        return self


class EditMessage(Strict):
    """Websocket client -> server: render this recipe (protocol v1)."""

    v: Literal[1] = 1
    type: Literal["edit"] = "edit"
    seq: int = Field(ge=0, le=2**53)
    recipe: Recipe
    preview: bool = False
    """A recipe sent while dragging; may be answered at lower cost (JPEG) and superseded freely."""


class ImageHeader(BaseModel):
    """Server -> client: describes the binary frame that follows."""

    type: Literal["image"] = "image"
    seq: int
    format: Literal["png", "jpeg"]
    width: int
    height: int
    bytes: int
    timings: dict[str, float]
    batch: int


class ErrorMessage(BaseModel):
    type: Literal["error"] = "error"
    seq: int | None = None
    code: str
    message: str
