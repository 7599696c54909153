"""Painting: recipe -> strokes -> images, through the library's own functions.

``Painting`` is what the executor's worker thread calls for a group of requests of one model and
layer: ``strokes`` turns a recipe into ``dissect_core.intervene`` strokes (brushes through
``brush_edit``, explicit units at their q99 levels), ``render`` takes the edit-layer activations
from the feature cache (or computes the missing ones together), stacks the edit maps with
``batch_edit_maps``, applies them, and runs the layers after the edit layer with
``models.incremental.render_batch`` (painters whose last render is cached update by windows, the
rest run in one batch). Nothing here queues or schedules: that is ``server.runtime``.
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
from models.proggan import ProgressiveGenerator
from models.samples import z_tensor
from server.caches import FeatureCache, PainterStates, PainterTag
from server.catalog import Catalog, LoadedModel
from server.errors import ServiceError, TablesBuilding
from server.metrics import Metrics
from server.schemas import Recipe
from server.tables import editable

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
                 incremental_max_fraction: float = 0.6) -> None:
        self.catalog = catalog
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
        key = (model.id, f"scene-cells:{layer}", recipe.sample) if recipe.sample is not None else None
        cached = self.cache.get(key) if key is not None else None
        if cached is None:
            job = PaintJob(model, recipe.model_copy(update={"strokes": []}), None)
            with torch.inference_mode():
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
        with torch.inference_mode():
            features = self._features(model, layer, jobs)
            a, b = batch_edit_maps(strokes, model.generator.layer_shape(layer), features.device)
            edited = apply_edit(features, a, b).to(self.dtype)
            images = self._suffix(model, layer, jobs, edited)
            return to_uint8(images.float())

    def _suffix(self, model: LoadedModel, layer: str, jobs: Sequence[PaintJob], edited: torch.Tensor) -> torch.Tensor:
        renderer = self._renderer(model)
        if not (self.incremental and incremental.supports(renderer, layer)):
            self.work_fraction.extend([1.0] * len(jobs))
            return renderer.forward_from(layer, edited)
        tags = [self._tag(model, layer, job.recipe) for job in jobs]
        caches = [self.painters.get(job.client, tag) if job.client is not None else None
                  for job, tag in zip(jobs, tags)]
        results, fractions = incremental.render_batch(renderer, layer, edited, caches, self.incremental_max_fraction)
        for job, tag, before, after, fraction in zip(jobs, tags, caches, results, fractions):
            self.metrics.render_work.observe(fraction)
            self.work_fraction.append(fraction)
            if job.client is not None and after is not before:
                self.painters.put(job.client, tag, after)
        return torch.cat([r.image for r in results])

    @staticmethod
    def _tag(model: LoadedModel, layer: str, recipe: Recipe) -> PainterTag:
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

    def _features(self, model: LoadedModel, layer: str, jobs: Sequence[PaintJob]) -> torch.Tensor:
        """Edit-layer activations: cached per sample, the missing ones computed in one batch."""
        generator = model.generator
        out: list[torch.Tensor | None] = []
        missing: list[int] = []
        for i, job in enumerate(jobs):
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
