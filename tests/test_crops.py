"""Cropped upsampling gives exactly the active pixels of thresholding whole upsampled maps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dissect_core.crops import active_pixels, crops_apply, crops_are_exact
from dissect_core.gandissect import tally_thresholded
from dissect_core.stats import IoUTally


def whole_map_pixels(maps: torch.Tensor, level: torch.Tensor, size: int) -> set[tuple[int, int]]:
    up = F.interpolate(maps[:, None].float(), size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    pair, y, x = (up > level[:, None, None]).nonzero(as_tuple=True)
    return set(zip(pair.tolist(), (y * size + x).tolist()))


def awkward_maps(count: int, h: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random maps with the cases that could trip a crop: integer values tied to the level,
    constant maps, one hot cell in a corner, NaN and infinities, levels below every value."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.randn(count, h, h, generator=g) * 2
    level = maps.flatten(1).quantile(0.9, dim=1)
    maps[:8] = torch.randint(-2, 3, (8, h, h), generator=g).float()
    level[:8] = torch.tensor([1.0, 0.0, 2.0, -1.0, 1.0, 0.0, 2.0, 1.0])
    maps[8:10] = 1.5
    level[8:10] = torch.tensor([1.5, 1.4999])
    maps[10] = -3.0
    maps[10, -1, -1] = 4.0
    level[10] = 0.5
    maps[11, 0, h // 2] = float("nan")
    maps[12, h // 2, 0] = float("inf")
    maps[13, 0, 0] = float("-inf")
    level[14] = -100.0
    return maps, level


@pytest.mark.parametrize(("h", "size"), [(1, 8), (2, 16), (3, 24), (4, 64), (8, 64), (16, 64), (5, 40)])
def test_active_pixels_are_those_of_the_whole_upsampled_maps(h: int, size: int) -> None:
    assert crops_apply(h, h, size)
    maps, level = awkward_maps(40, h, seed=h)
    pair, pixel = active_pixels(maps, level, size)
    found = list(zip(pair.tolist(), pixel.tolist()))
    assert len(found) == len(set(found))  # each active pixel once
    assert set(found) == whole_map_pixels(maps, level, size)
    small = active_pixels(maps, level, size, chunk_values=size * size)  # one crop at a time
    assert set(zip(small[0].tolist(), small[1].tolist())) == set(found)


def test_crops_apply_to_square_maps_upsampled_by_a_power_of_two() -> None:
    assert crops_apply(8, 8, 64) and crops_apply(4, 4, 8)
    assert not crops_apply(8, 8, 24)  # factor 3: weights are not exact binary fractions
    assert not crops_apply(8, 4, 64)  # not square
    assert not crops_apply(8, 8, 8)  # nothing to upsample
    assert crops_are_exact(8, 8)


def test_a_kernel_whose_crops_differ_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Were a kernel to round a crop differently from the whole map (another torch, another
    device), the check finds it and the whole-map path is used."""
    import dissect_core.crops as crops

    real = crops._upsample

    def drifting(maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
        out = real(maps, height, width)
        if maps.shape[-1] < 8:  # a crop: one value a unit in the last place off
            out = out.clone()
            out.view(-1)[0] = torch.nextafter(out.view(-1)[0], torch.tensor(float("inf")))
        return out

    monkeypatch.setattr(crops, "_upsample", drifting)
    assert not crops.crops_are_exact.__wrapped__(8, 8, "cpu")


def test_no_map_above_its_level_has_no_active_pixel() -> None:
    maps = torch.zeros(3, 8, 8)
    pair, pixel = active_pixels(maps, torch.ones(3), 64)
    assert pair.numel() == 0 and pixel.numel() == 0


@pytest.mark.parametrize("denominator", ["mask", "image"])
def test_a_cropped_tally_equals_the_whole_maps_tally(monkeypatch: pytest.MonkeyPatch, denominator: str) -> None:
    import dissect_core.gandissect as gandissect

    g = torch.Generator().manual_seed(7)
    acts = torch.randn(20, 20, 8, 8, generator=g)
    labels = torch.randint(0, 5, (20, 2, 32, 32), generator=g)
    level = acts.permute(1, 0, 2, 3).reshape(20, -1).quantile(0.995, dim=1)  # few maps fire: the sparse path
    category_of = [-1, 0, 0, 1, 1]
    cropped = IoUTally(20, category_of, denominator=denominator)
    calls: list[int] = []
    monkeypatch.setattr(gandissect, "active_pixels", lambda maps, *rest: (calls.append(len(maps)),
                                                                         active_pixels(maps, *rest))[1])
    tally_thresholded(cropped, acts, level, labels)
    assert calls and 0 < calls[0] < 200  # the firing maps only went through the crops
    monkeypatch.setattr(gandissect, "crops_apply", lambda *shape: False)
    whole = IoUTally(20, category_of, denominator=denominator)
    tally_thresholded(whole, acts, level, labels)
    for name in ("intersection", "unit_area", "label_area"):
        assert torch.equal(getattr(cropped, name), getattr(whole, name)), name
    assert int(cropped.intersection.sum()) > 0
