"""The baseline for bench/serve_latency.py: serving the way the original GANPaint server did.

Per request: one global lock, a full generator forward of the whole stroke stack (no activation
cache, no batching), the edit applied by a forward hook, and the image returned as JSON holding a
base64 JPEG (quality 99) -- ``{"d": "data:image/jpeg;base64,..."}`` -- over HTTP POST.
Uses the same model, table and edit rule as ganpaint, so only the serving strategy differs.
"""

from __future__ import annotations

import argparse
import base64
import io
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from PIL import Image  # noqa: E402

from dissect_core.intervene import Stroke, apply_edit, brush_units, edit_maps, unit_values  # noqa: E402
from dissect_core.nethook import Trace  # noqa: E402
from models.imaging import to_uint8  # noqa: E402
from models.samples import z_tensor  # noqa: E402
from models.zoo import DEFAULT_GENERATOR  # noqa: E402
from server.catalog import Catalog  # noqa: E402
from server.schemas import Recipe  # noqa: E402
from server.settings import Settings  # noqa: E402


def build(model_id: str, zoo_dir: Path | None, models_dir: Path | None = None) -> FastAPI:
    settings = Settings(zoo_dir=zoo_dir)
    catalog = Catalog(settings.default_model, models_dir, settings.cache_dir,
                      None if models_dir else settings.segmenter, torch.device("cpu"),
                      settings.dissect_samples, settings.causal_samples, zoo_dir)
    model = catalog.get(model_id)
    if catalog.lookup_table(model, model.edit_layer).status == "missing":
        catalog.build_table(model, model.edit_layer)
    lock = threading.Lock()
    app = FastAPI()

    @app.get("/ready")
    def ready() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/generate")
    def generate(recipe: Recipe) -> dict[str, str]:
        layer = model.edit_layer
        table = catalog.table(model, layer)
        channels = model.generator.layer_shape(layer)[0]
        strokes = []
        for spec in recipe.strokes:
            if spec.brush is not None:
                units, values = brush_units(table.concept_ranking(spec.brush), table.q99, spec.strength, channels)
            else:  # explicit units (a model without a table): the same q99 levels ganpaint falls back to
                levels = table.q99 if table is not None else catalog.fallback_levels(model, layer).numpy()
                units = tuple(spec.units or ())
                values = unit_values(units, levels, spec.strength)
            strokes.append(Stroke(units, values, spec.action, spec.mask.to_tensor()))
        with lock, torch.inference_mode():
            a, b = edit_maps(strokes, model.generator.layer_shape(layer))
            with Trace(model.generator, layer, edit=lambda x, _: apply_edit(x, a, b)):
                image = model.generator(z_tensor([recipe.sample], model.generator.z_dim))
            pixels = to_uint8(image)[0]
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=99)
        return {"d": "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()}

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default=DEFAULT_GENERATOR)
    parser.add_argument("--zoo-dir", type=Path)
    parser.add_argument("--models-dir", type=Path, help="operator checkpoints (--model is then one of their ids)")
    args = parser.parse_args()
    uvicorn.run(build(args.model, args.zoo_dir, args.models_dir), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
