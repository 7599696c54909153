"""Painting: recipe -> strokes -> images, through the library's own functions.

``Painting`` is what the executor's worker thread calls for a group of requests of one model and
layer: ``strokes`` turns a recipe into ``dissect_core.intervene`` strokes (brushes through
``brush_edit``, explicit units at their q99 levels), ``render`` takes the edit-layer activations
from the feature cache (or computes the missing ones together), stacks the edit maps with
``batch_edit_maps``, applies them, and runs the layers after the edit layer with
``models.incremental.render_batch`` (painters whose last render is cached update by windows, the
rest run in one batch). An uploaded picture (``recipe.upload``) is painted from its inverted
activations through the generator adapted to it, and composited into the picture outside the band
the edit changed (``models.inversion``). Nothing here queues or schedules: that is ``server.runtime``.
"""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from dissect_core.intervene import Stroke, apply_edit, batch_edit_maps, brush_edit, unit_values
from dissect_core.nethook import private_copy
from dissect_core.placement import PLACED, SCENE_GROUPS, place_mask, scene_cells
from models import incremental
from models.imaging import to_uint8
from models.inversion import composite, picture_tensor
from models.proggan import ProgressiveGenerator
from models.samples import z_tensor
from server.caches import FeatureCache, PainterStates, PainterTag
from server.catalog import Catalog, LoadedModel
from server.errors import ServiceError, TablesBuilding
from server.metrics import Metrics
from server.schemas import Recipe
from server.tables import editable
from server.uploads import PictureSource, UploadStore

__all__ = ["Painting", "PaintJob", "encode_image"]


class PaintJob:
    """One recipe to paint: its model, recipe, and the painter (connection) it is for, if any."""

    __slots__ = ("model", "recipe", "client")

    def __init__(self, model: LoadedModel, recipe: Recipe, client: str | None) -> None:
        self.model, self.recipe, self.client = model, recipe, client


def encode_image(pixels: np.ndarray, preview: bool) -> tuple[bytes, str]:
    """PNG (exact) or, for previews while dragging, JPEG (smaller, faster)."""
    buffer = io.BytesIO()
    if preview:
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
        return buffer.getvalue(), "jpeg"
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue(), "png"


class Painting:
    def __init__(self, catalog: Catalog, metrics: Metrics, dtype: torch.dtype = torch.float32,
                 cache_items: int = 512, incremental_on: bool = True, incremental_bytes: int = 1 << 30,
                 incremental_max_fraction: float = 0.6, uploads: UploadStore | None = None) -> None:
        self.catalog = catalog
        self.uploads = uploads
        """Uploaded pictures (recipes with ``upload``); None: the server paints samples only."""
        self.metrics = metrics
        self.dtype = dtype
        """Precision of the layers after the edit layer (features and edits stay float32)."""
        self.cache = FeatureCache(cache_items)
        self.incremental = incremental_on and incremental_bytes > 0
        self.incremental_max_fraction = incremental_max_fraction
        self.painters = PainterStates(incremental_bytes)
        self.work_fraction: deque[float] = deque(maxlen=4096)
        """Share of the full suffix each of the last renders did (1 = full, 0 = unchanged)."""
        self._render_copies: dict[str, ProgressiveGenerator] = {}
        self._maps: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
        """Adaptation maps of recent uploads in the painting precision (oldest first)."""

    def forget(self, client: str) -> None:
        """A painter went away: drop its cached layer outputs."""
        self.painters.drop(client)

    # --- recipe -> strokes ------------------------------------------------------------------------
    def strokes(self, model: LoadedModel, layer: str, recipe: Recipe) -> list[Stroke]:
        """Recipe strokes -> intervention strokes (``brush_edit`` for brushes, q99 levels for units)."""
        generator = model.generator
        if not editable(model, layer):
            raise ServiceError(f"model {model.id!r} has no editable layer {layer!r}", "unknown_layer", 422)
        if recipe.z is not None and len(recipe.z) != generator.z_dim:
            raise ServiceError(f"z must have {generator.z_dim} values for model {model.id!r}", "bad_z", 422)
        if recipe.upload is not None and layer != model.edit_layer:
            raise ServiceError(f"an upload is painted at its model's edit layer {model.edit_layer}", "unknown_layer", 422)
        self.source(model, recipe)  # an unknown upload is refused before any work
        channels = generator.layer_shape(layer)[0]
        table = self.catalog.table(model, layer)
        strokes: list[Stroke] = []
        levels: Any = None
        for spec in recipe.strokes:
            mask = spec.mask.to_tensor()
            if spec.action == "erase":
                strokes.append(Stroke((), (), "erase", mask, spec.mask.soft))
                continue
            if spec.brush is not None:
                if table is None:
                    state = self.catalog.table_state(model, layer)
                    if state.status == "building":
                        raise TablesBuilding(f"brushes of {model.id}/{layer} are being built "
                                             f"({state.progress:.0%} done)")
                    raise ServiceError(f"{model.id}/{layer} has no dissection table, so no brushes; paint with "
                                       "explicit units", "no_brushes", 422)
                try:
                    edit = brush_edit(table, spec.brush, spec.action, spec.strength)
                except KeyError:
                    raise ServiceError(f"unknown brush {spec.brush!r}", "unknown_brush", 422) from None
                if spec.place and spec.action == "add" and spec.brush in PLACED:
                    mask = self._placed(model, layer, recipe, spec.brush, mask)
                strokes.append(edit.stroke(spec.action, mask, spec.mask.soft))
                continue
            bad = [u for u in spec.units or [] if u >= channels]
            if bad:
                raise ServiceError(f"units {bad[:5]} out of range: {layer} has {channels} units", "bad_units", 422)
            if levels is None:
                levels = table.q99 if table is not None else self.catalog.fallback_levels(model, layer).cpu().numpy()
            units = tuple(spec.units or ())
            values = unit_values(units, levels, spec.strength) if spec.action == "add" else ()
            strokes.append(Stroke(units, values, spec.action, mask, spec.mask.soft))
        return strokes

    def source(self, model: LoadedModel, recipe: Recipe) -> PictureSource | None:
        """The uploaded picture a recipe paints (None for samples and z); 404 when it is gone, 409
        while it has no encoding yet, 422 when it belongs to another model."""
        if recipe.upload is None:
            return None
        source = self.uploads.source(recipe.upload, self.catalog.device) if self.uploads is not None else None
        if source is None:
            known = self.uploads is not None and self.uploads.get(recipe.upload) is not None
            if known:
                raise ServiceError(f"upload {recipe.upload} has no encoding (its model has no encoder)", "not_encoded", 409)
            raise ServiceError(f"no upload {recipe.upload} (never uploaded, deleted or expired)", "unknown_upload", 404)
        if source.model != model.id:
            raise ServiceError(f"upload {recipe.upload} was made for model {source.model!r}, not {model.id!r}",
                               "upload_model", 422)
        return source

    def _placed(self, model: LoadedModel, layer: str, recipe: Recipe, concept: str, mask: torch.Tensor) -> torch.Tensor:
        """The mask of a placed brush stroke (``dissect_core.placement``): the footprint where the GAN
        draws ``concept`` in what the mask covers, judged on the unedited image; the mask itself
        where there is no such place or the server has no segmenter."""
        cells = self._scene_cells(model, layer, recipe)
        return mask if cells is None else place_mask(concept, mask, cells)

    def _scene_cells(self, model: LoadedModel, layer: str, recipe: Recipe) -> dict[str, np.ndarray] | None:
        """Per-cell shares of sky and building in the unedited image (cached per sample)."""
        segmenter = self.catalog.segmenter()
        if segmenter is None:
            return None
        source = self.source(model, recipe)
        key: tuple | None = None
        if recipe.sample is not None:
            key = (model.id, f"scene-cells:{layer}", recipe.sample)
        elif source is not None:
            key = (model.id, f"scene-cells:{layer}", "upload", source.id)
        cached = self.cache.get(key) if key is not None else None
        if cached is None:
            with torch.inference_mode():
                if source is not None:  # a picture's own pixels say where its sky and roofs are
                    image = picture_tensor(source.picture, self.catalog.device)
                else:
                    job = PaintJob(model, recipe.model_copy(update={"strokes": []}), None)
                    features = self._features(model, layer, [job])
                    image = model.generator.forward_from(layer, features).clamp(-1, 1)
                labels = segmenter(image)[0, 0].cpu().numpy()
            grid = model.generator.layer_shape(layer)[1]
            cells = scene_cells(labels, grid, segmenter.labels)
            cached = torch.from_numpy(np.stack([cells[k] for k in SCENE_GROUPS]))
            if key is not None:
                self.cache.put(key, cached)
        return {k: cached[i].numpy() for i, k in enumerate(SCENE_GROUPS)}

    # --- strokes -> images ------------------------------------------------------------------------
    def render(self, layer: str, jobs: Sequence[PaintJob], strokes: Sequence[Sequence[Stroke]]) -> np.ndarray:
        """(N, H, W, 3) uint8 images of ``jobs`` (one model) edited by ``strokes``, in one forward pass."""
        model = jobs[0].model
        sources = [self.source(model, job.recipe) for job in jobs]
        with torch.inference_mode():
            features = self._features(model, layer, jobs, sources)
            a, b = batch_edit_maps(strokes, model.generator.layer_shape(layer), features.device)
            edited = apply_edit(features, a, b)
            images = self._suffix(model, layer, jobs, edited.to(self.dtype), sources)
            pixels = to_uint8(images.float())
            for i, source in enumerate(sources):
                if source is not None:  # the picture itself outside the band the edit changed
                    changed = (edited[i] != features[i]).any(0).cpu().numpy()
                    pixels[i] = composite(source.picture, pixels[i], changed)
            return pixels

    def _suffix(self, model: LoadedModel, layer: str, jobs: Sequence[PaintJob], edited: torch.Tensor,
                sources: Sequence[PictureSource | None]) -> torch.Tensor:
        renderer = self._renderer(model)
        maps = [self._multipliers(source) for source in sources]
        if not (self.incremental and incremental.supports(renderer, layer)):
            self.work_fraction.extend([1.0] * len(jobs))
            if not any(m is not None for m in maps):
                return renderer.forward_from(layer, edited)
            return torch.cat([incremental.full_suffix(renderer, layer, edited[i:i + 1], maps[i]).image
                              for i in range(len(jobs))])
        tags = [self._tag(model, layer, job.recipe, source) for job, source in zip(jobs, sources)]
        caches = [self.painters.get(job.client, tag) if job.client is not None else None
                  for job, tag in zip(jobs, tags)]
        results, fractions = incremental.render_batch(renderer, layer, edited, caches, self.incremental_max_fraction,
                                                      maps)
        for job, tag, before, after, fraction in zip(jobs, tags, caches, results, fractions):
            self.metrics.render_work.observe(fraction)
            self.work_fraction.append(fraction)
            if job.client is not None and after is not before:
                self.painters.put(job.client, tag, after)
        return torch.cat([r.image for r in results])

    def _multipliers(self, source: PictureSource | None) -> dict[str, torch.Tensor] | None:
        """A picture's adaptation maps in the painting precision."""
        if source is None or source.multipliers is None:
            return None
        if self.dtype == torch.float32:
            return source.multipliers
        key = (source.id, source.stage)
        cached = self._maps.get(key)
        if cached is None:
            cached = {name: m.to(self.dtype) for name, m in source.multipliers.items()}
            self._maps[key] = cached
            while len(self._maps) > 32:
                self._maps.pop(next(iter(self._maps)))
        return cached

    @staticmethod
    def _tag(model: LoadedModel, layer: str, recipe: Recipe, source: PictureSource | None = None) -> PainterTag:
        if source is not None:
            return (model.id, layer, ("upload", source.id, source.stage))
        return (model.id, layer, recipe.sample if recipe.sample is not None else tuple(recipe.z or ()))

    def _renderer(self, model: LoadedModel) -> ProgressiveGenerator:
        """The generator in the painting precision (a converted copy, made once per model)."""
        if self.dtype == torch.float32:
            return model.generator
        copy = self._render_copies.get(model.id)
        if copy is None:
            copy = private_copy(model.generator).to(self.dtype)
            self._render_copies[model.id] = copy
        return copy

    def _features(self, model: LoadedModel, layer: str, jobs: Sequence[PaintJob],
                  sources: Sequence[PictureSource | None] | None = None) -> torch.Tensor:
        """Edit-layer activations: an upload's own, cached per sample, the missing computed in one batch."""
        generator = model.generator
        out: list[torch.Tensor | None] = []
        missing: list[int] = []
        for i, job in enumerate(jobs):
            source = sources[i] if sources is not None else self.source(model, job.recipe)
            if source is not None:
                out.append(source.r)
                continue
            sample = job.recipe.sample
            cached = self.cache.get((model.id, layer, sample)) if sample is not None else None
            if sample is not None:
                self.metrics.cache.labels(result="hit" if cached is not None else "miss").inc()
            if cached is None:
                missing.append(i)
            out.append(cached)
        if missing:
            zs = []
            for i in missing:
                recipe = jobs[i].recipe
                if recipe.sample is not None:
                    zs.append(z_tensor([recipe.sample], generator.z_dim, device=self.catalog.device))
                else:
                    zs.append(torch.tensor([recipe.z], dtype=torch.float32, device=self.catalog.device))
            computed = generator.forward_to(layer, torch.cat(zs))
            for j, i in enumerate(missing):
                out[i] = computed[j]
                sample = jobs[i].recipe.sample
                if sample is not None:
                    self.cache.put((model.id, layer, sample), computed[j])
        return torch.stack(out)  # type: ignore[arg-type]
