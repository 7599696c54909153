"""Pictures into the generator: the encoder, refinement, adaptation, the composite, incremental maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models import incremental
from models.imaging import to_uint8
from models.inversion import Adaptation, adapt, adapt_layers, composite, edit_band, encode, picture_tensor, psnr, refine, suffix_with
from models.proggan import ProgressiveGenerator
from models.samples import z_tensor


def test_edit_band_reaches_exactly_dilation_plus_three_sigma() -> None:
    changed = np.zeros((8, 8), bool)
    changed[3, 4] = True  # cell rows 48..63, cols 64..79 of a 128 px picture
    band = edit_band(changed, 128, dilation=8, sigma=2.0)
    assert band[48:64, 64:80].min() == 1.0 and band[40:72, 56:88].min() == 1.0  # cell + dilation: generated
    reach = 8 + 6  # dilation + ceil(3 sigma)
    inside = np.zeros((128, 128), bool)
    inside[48 - reach:64 + reach, 64 - reach:80 + reach] = True
    assert band[~inside].max() == 0.0 and band[inside].min() >= 0.0
    assert 0 < band[48 - 10, 70] < 1  # the feathered edge
    assert not edit_band(np.zeros((8, 8), bool), 128).any()


def test_composite_keeps_the_pictures_bytes_outside_the_band() -> None:
    rng = np.random.default_rng(0)
    picture = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rendered = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    changed = np.zeros((8, 8), bool)
    changed[0:2, 5:7] = True
    out = composite(picture, rendered, changed)
    band = edit_band(changed, 64)
    assert np.array_equal(out[band == 0], picture[band == 0])
    assert np.array_equal(out[band == 1], rendered[band == 1])
    assert (band == 0).mean() > 0.5
    assert np.array_equal(composite(picture, rendered, np.zeros((8, 8), bool)), picture)


def test_psnr() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    assert psnr(a, b) == float("inf")
    b[0, 0, 0] = 255  # mse = 255^2 / 48
    assert psnr(a, b) == pytest.approx(10 * np.log10(48))


def _generator(seed: int = 0) -> ProgressiveGenerator:
    torch.manual_seed(seed)
    generator = ProgressiveGenerator([32, 32, 32, 16, 16, 8])  # 64 px, layer4 at 8x8
    for p in generator.parameters():
        p.requires_grad_(False)
    return generator.eval()


def _reference_suffix(generator: ProgressiveGenerator, r: torch.Tensor, maps: dict | None = None) -> torch.Tensor:
    """The layers after layer4 one module at a time, each output times its map (independent of the
    library's ``full_suffix``, which ``suffix_with`` is)."""
    x = r
    for name in generator.layer_names[4:]:
        x = generator._modules[name](x)
        if maps and name in maps:
            x = x * maps[name]
    return x


def test_incremental_rendering_with_adaptation_maps_equals_the_full_pass() -> None:
    generator = _generator()
    r = generator.forward_to("layer4", z_tensor([3], generator.z_dim))
    maps = {}
    with torch.no_grad():
        x = r
        for name in generator.layer_names[4:]:
            x = generator._modules[name](x)
            if name in adapt_layers(generator, "layer4"):
                maps[name] = 1 + 0.5 * torch.randn_like(x)
        assert adapt_layers(generator, "layer4") == ["layer8", "layer10"]
        cache = incremental.full_suffix(generator, "layer4", r, maps)
        assert torch.equal(cache.image, _reference_suffix(generator, r, maps))
        assert torch.equal(suffix_with(generator, "layer4", r, maps), cache.image)
        edited = r.clone()
        edited[:, :, 5:7, 1:3] = 2.0
        updated, fraction = incremental.render(generator, cache, edited, 1.0, maps)
        assert 0 < fraction < 1
        assert torch.allclose(updated.image, _reference_suffix(generator, edited, maps), atol=1e-5)
        assert not torch.allclose(updated.image, _reference_suffix(generator, edited), atol=1e-2)


def test_refine_and_adapt_bring_a_picture_closer() -> None:
    generator = _generator(1)
    truth = generator.forward_to("layer4", z_tensor([5], generator.z_dim))
    with torch.no_grad():
        target = suffix_with(generator, "layer4", truth).clamp(-1, 1)
    start = truth + 0.5 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))
    to8 = lambda image: to_uint8(image.clamp(-1, 1))[0]
    goal = to8(target)
    with torch.no_grad():
        before = psnr(goal, to8(suffix_with(generator, "layer4", start)))
    refined = refine(generator, "layer4", target, start, steps=60, lr=0.05, residual_weight=1.0)
    with torch.no_grad():
        after = psnr(goal, to8(suffix_with(generator, "layer4", refined)))
    assert after > before + 2
    held = refine(generator, "layer4", target, start, steps=60, lr=0.05)  # the default L2 weight, 10
    assert (held - start).norm() < (refined - start).norm()
    adaptation = adapt(generator, "layer4", refined, target, steps=60, lr=0.05)
    assert set(adaptation.scales) == {"layer8", "layer10"}
    with torch.no_grad():
        adapted = psnr(goal, to8(suffix_with(generator, "layer4", refined, adaptation.multipliers())))
    assert adapted > after
    again = Adaptation.from_state_dict(adaptation.state_dict())
    assert all(torch.equal(again.scales[k], adaptation.scales[k]) for k in adaptation.scales)


def test_the_shipped_encoder_round_trips_generated_samples() -> None:
    """world128's encoder on held-out samples: the layer's direction per cell and the picture come back."""
    from models.evaluate import encoder_report
    from models.zoo import load_model

    generator = load_model("world128")
    encoder = load_model("world128/encoder")
    report = encoder_report(encoder, generator, "layer4", samples=25)
    assert report["cosine_mean"] > 0.9, report
    assert report["psnr_mean_db"] > 20, report
    x = picture_tensor(np.zeros((128, 128, 3), np.uint8))
    assert encode(encoder, x).shape == (1, 512, 8, 8)
