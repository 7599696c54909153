"""``POST /api/cam``: why did the classifier predict this? CAM-family maps for an upload or a world scene.

Uploads are decoded by ``server.pictures.decode_upload`` (PNG or JPEG, bounded in bytes and pixels,
centre-cropped to a square) at the classifier's input size.
"""

from __future__ import annotations

import base64
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import APIRouter, Depends, File, Form, UploadFile

from dissect_core.cam import METHODS, make_method, overlay
from models.imaging import to_png_bytes
from server.api.deps import ClassifierDep, StateDep, require_token
from server.api.errors import ApiError, responses
from server.pictures import decode_upload
from server.services import classifier_id

router = APIRouter(prefix="/api", tags=["cam"], dependencies=[Depends(require_token)])
MAX_METHODS = 6


@router.get("/classifier", summary="The explained classifier: classes and layers with their unit counts",
            responses=responses(404))
def classifier_info(state: StateDep,
                    classifier: ClassifierDep) -> dict[str, Any]:
    layers = []
    for name, module in classifier.named_modules():
        if name.count(".") == 1 and name.startswith("features."):
            convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
            if convs:
                layers.append({"name": name, "units": convs[-1].out_channels})
    return {"id": classifier_id(state), "classes": list(getattr(classifier, "class_names", [])),
            "layers": layers, "cam_layer": getattr(classifier, "target_layer", None)}


def _data_url(pixels: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(to_png_bytes(pixels)).decode()


@router.post("/cam", summary="Explanation maps (CAM family, saliency) for an uploaded image or a world scene",
             responses=responses(404, 413, 503))
async def cam(
    state: StateDep,
    classifier: ClassifierDep,
    image: Annotated[UploadFile | None, File(description="PNG or JPEG (bounded size)")] = None,
    sample: Annotated[int | None, Form(ge=0, le=999_999, description="held-out world scene index")] = None,
    methods: Annotated[str, Form(max_length=200, description="comma-separated method names")] = "gradcam",
    target: Annotated[int | None, Form(ge=0, le=999, description="class to explain; default: top-1")] = None,
    top_k: Annotated[int, Form(ge=1, le=10)] = 3,
    alpha: Annotated[float, Form(ge=0.0, le=1.0)] = 0.5,
    include_raw: Annotated[bool, Form()] = False,
) -> dict[str, Any]:
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names or len(names) > MAX_METHODS:
        raise ApiError(422, "bad_methods", f"give 1 to {MAX_METHODS} methods")
    unknown = [m for m in names if m not in METHODS]
    if unknown:
        raise ApiError(422, "unknown_method", f"unknown methods {unknown}; methods are {', '.join(METHODS)}")
    if (image is None) == (sample is None):
        raise ApiError(422, "bad_input", "send exactly one of an image file or a world sample index")
    size = 64
    boxes: list[list[int]] = []
    truth = None
    if image is not None:
        data = await image.read(state.settings.max_upload_bytes + 1)
        if len(data) > state.settings.max_upload_bytes:
            raise ApiError(413, "too_large", f"uploads are limited to {state.settings.max_upload_bytes:,} bytes")
        pixels = decode_upload(data, size)
    else:
        from models.world import SCENES, render_scene, world_seed

        assert sample is not None  # exactly one of image and sample (checked above)
        scene = render_scene(world_seed("heldout", sample), size)
        pixels, truth = scene.image, SCENES[scene.scene]
        boxes = [list(b[1:5]) for b in scene.boxes if b[5]]
    class_names = list(getattr(classifier, "class_names", []))
    if target is not None and class_names and target >= len(class_names):
        raise ApiError(422, "bad_target", f"target must be below {len(class_names)}")

    def work() -> dict[str, Any]:
        x = torch.from_numpy(pixels.copy()).permute(2, 0, 1)[None].float().to(state.device) / 127.5 - 1
        with torch.no_grad():
            probs = torch.softmax(classifier(x), 1)[0]
        order = probs.argsort(descending=True)[:top_k].tolist()
        chosen = target if target is not None else order[0]
        results = []
        import time

        for name in names:
            start = time.perf_counter()
            result = make_method(name, classifier)(x, [chosen])
            elapsed = (time.perf_counter() - start) * 1000
            cam_map = result.maps[0].cpu().numpy()
            heat, blended = overlay(pixels, cam_map, alpha)
            entry = {"method": name, "heatmap": _data_url(heat), "overlay": _data_url(blended), "ms": round(elapsed, 2)}
            if include_raw:
                entry["raw"] = result.raw[0].cpu().numpy().round(5).tolist()
            results.append(entry)
        return {
            "predictions": [{"class": c, "name": class_names[c] if c < len(class_names) else str(c),
                             "probability": round(float(probs[c]), 5)} for c in order],
            "target": {"class": chosen, "name": class_names[chosen] if chosen < len(class_names) else str(chosen)},
            "image": _data_url(pixels), "truth": truth, "boxes": boxes, "results": results,
        }

    return await state.executor.call(work, inference=False)
