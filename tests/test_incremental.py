"""Incremental rendering: windows of later layers give the same pixels as a full forward."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models import incremental
from models.proggan import ProgressiveGenerator

TOLERANCE = 1e-4  # fp32 rounding of convolutions on differently shaped inputs


@pytest.fixture(scope="module")
def generator() -> ProgressiveGenerator:
    torch.manual_seed(0)
    # 64 px, channels-last like every loaded model
    return ProgressiveGenerator([16, 32, 32, 16, 16, 8]).eval().requires_grad_(False).to(
        memory_format=torch.channels_last)


def _edit(base: torch.Tensor, rows: slice, cols: slice, value: float) -> torch.Tensor:
    edited = base.clone()
    edited[:, : edited.shape[1] // 2, rows, cols] = value
    return edited


@pytest.mark.parametrize(("rows", "cols"), [
    (slice(0, 2), slice(0, 2)),  # top-left corner
    (slice(6, 8), slice(6, 8)),  # bottom-right corner
    (slice(0, 2), slice(3, 5)),  # top edge
    (slice(3, 5), slice(7, 8)),  # right edge
    (slice(3, 5), slice(3, 5)),  # centre
    (slice(0, 8), slice(4, 5)),  # a full-height column
])
def test_window_equals_full_forward(generator: ProgressiveGenerator, rows: slice, cols: slice) -> None:
    with torch.inference_mode():
        base = generator.forward_to("layer4", torch.randn(1, 16))
        cache = incremental.full_suffix(generator, "layer4", base)
        edited = _edit(base, rows, cols, 3.0)
        cache, fraction = incremental.render(generator, cache, edited)
        full = generator.forward_from("layer4", edited)
    assert 0 < fraction < 1
    assert float((cache.image - full).abs().max()) < TOLERANCE
    # every later layer's cached output is right too, not only the image
    x = edited
    for name, output in zip(generator.layer_names[generator.layer_names.index("layer4") + 1:], cache.outputs):
        x = generator._modules[name](x)
        assert float((output - x).abs().max()) < TOLERANCE, name


def test_several_strokes_then_erase(generator: ProgressiveGenerator) -> None:
    """A painter's session: strokes added one after another, then one erased, each step windowed."""
    with torch.inference_mode():
        base = generator.forward_to("layer4", torch.randn(1, 16, generator=torch.Generator().manual_seed(3)))
        cache = incremental.full_suffix(generator, "layer4", base)
        current = base
        fractions = []
        for rows, cols in [(slice(1, 3), slice(1, 3)), (slice(5, 7), slice(2, 4)), (slice(0, 1), slice(7, 8))]:
            current = _edit(current, rows, cols, 2.5)
            cache, fraction = incremental.render(generator, cache, current)
            fractions.append(fraction)
            assert float((cache.image - generator.forward_from("layer4", current)).abs().max()) < TOLERANCE
        erased = current.clone()
        erased[:, :, 5:7, 2:4] = base[:, :, 5:7, 2:4]  # erase the second stroke
        cache, fraction = incremental.render(generator, cache, erased)
        assert float((cache.image - generator.forward_from("layer4", erased)).abs().max()) < TOLERANCE
        # unchanged input: nothing recomputed, the same image
        image = cache.image.clone()
        same, zero = incremental.render(generator, cache, erased.clone())
        assert zero == 0.0 and torch.equal(same.image, image)
    assert all(0 < f < 1 for f in fractions + [fraction])


def test_reach_and_work_fraction(generator: ProgressiveGenerator) -> None:
    box = incremental.Box((0, 1), (0, 1))
    # one corner cell reaches rows 0..2 at 16 px (2 + 1 margin), then 0..4 and 0..10, 0..11 at 32 px ...
    corner = incremental.window_fraction(generator, "layer4", box)
    centre = incremental.window_fraction(generator, "layer4", incremental.Box((3, 5), (3, 5)))
    everything = incremental.window_fraction(generator, "layer4", incremental.Box((0, 8), (0, 8)))
    assert everything == pytest.approx(1.0)
    assert 0 < corner < centre < 1
    # by hand for the first block after layer4 (upsample to 16, 3x3 conv): rows [0, 3) of 16
    reached, size = incremental._reach(generator.layer5, box, 8)
    assert (reached, size) == (incremental.Box((0, 3), (0, 3)), 16)
    assert incremental.changed_box(torch.zeros(1, 2, 8, 8), torch.zeros(1, 2, 8, 8)) is None
    changed = torch.zeros(1, 2, 8, 8)
    changed[0, 1, 2, 5] = 1
    changed[0, 0, 6, 3] = 1
    assert incremental.changed_box(torch.zeros(1, 2, 8, 8), changed) == incremental.Box((2, 7), (3, 6))


def test_supports_only_known_blocks(generator: ProgressiveGenerator) -> None:
    assert incremental.supports(generator, "layer4") and incremental.supports(generator, "layer1")
    assert not incremental.supports(generator, "nonsense")
    assert not incremental.supports(torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3)), "0")


def test_painter_states_bound_bytes_and_tags() -> None:
    from server.caches import PainterStates

    def cache(n: int) -> incremental.SuffixCache:
        return incremental.SuffixCache("layer4", torch.zeros(n), [torch.zeros(n)])

    states = PainterStates(capacity=4 * 100)  # bytes: float32, so 100 numbers
    states.put("a", ("m", "layer4", 1), cache(20))  # 160 bytes
    states.put("b", ("m", "layer4", 2), cache(20))
    assert states.get("a", ("m", "layer4", 2)) is None  # other sample: start over
    assert states.get("a", ("m", "layer4", 1)) is not None  # (a is now the most recent)
    states.put("c", ("m", "layer4", 3), cache(20))  # 480 > 400: the least recent (b) goes
    assert states.get("b", ("m", "layer4", 2)) is None and len(states) == 2 and states.nbytes == 320
    states.put("d", ("m", "layer4", 4), cache(60))  # larger than the whole budget: not kept
    assert states.get("d", ("m", "layer4", 4)) is None
    states.drop("a")
    assert len(states) == 1 and states.nbytes == 160


def _png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def test_websocket_painter_gets_windowed_renders_equal_to_full(tiny_zoo: Path, tmp_path: Path) -> None:
    """Through the server: a painter's second stroke renders by windows, pixels as the full render."""
    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.schemas import MaskSpec
    from tests.test_server import ORIGIN, make_settings

    app = create_app(make_settings(tiny_zoo, tmp_path, incremental_max_fraction=0.9))
    masks = []
    mask = np.zeros((16, 16), bool)
    for rows, cols in [(slice(0, 4), slice(0, 4)), (slice(12, 16), slice(12, 16))]:
        mask = mask.copy()
        mask[rows, cols] = True
        masks.append(mask)
    with TestClient(app) as client:
        app.state.ganpaint.jobs.wait_idle(60)
        executor = app.state.ganpaint.executor
        with client.websocket_connect("/ws/paint", headers={**ORIGIN}) as ws:
            images = []
            for seq, m in enumerate(masks):
                body = {"v": 1, "model": "tiny", "sample": 5,
                        "strokes": [{"units": [0, 1, 2, 3], "strength": 1.0, "mask": MaskSpec.from_array(m).model_dump()}]}
                ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": seq, "recipe": body}))
                assert json.loads(ws.receive_text())["type"] == "image"
                images.append((body, ws.receive_bytes()))
            fractions = list(executor.painting.work_fraction)[-2:]
            assert len(executor.painting.painters) == 1
        assert fractions[0] == 1.0 and 0 < fractions[1] < 0.9  # the second stroke was windowed
        for body, data in images:
            full = client.post("/api/render", json=body)  # HTTP: no painter state, full suffix
            assert np.abs(_png(data) - _png(full.content)).max() <= 1
        assert len(executor.painting.painters) == 0  # the painter left: its state is dropped
