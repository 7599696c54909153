"""Network Dissection on a world probe set equals a brute-force computation; outputs in NetDissect's shape."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from dissect_core.datasets.broden import BrodenDataset
from dissect_core.netdissect import NetDissectConfig, class_drivers, netdissect, tally_csv, unique_detectors
from models.world.broden import export_broden


class Probe(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.AvgPool2d(4))
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> BrodenDataset:
    out = export_broden(tmp_path_factory.mktemp("probe") / "broden", 10, size=32, progress=False)
    return BrodenDataset(out)


def brute_force(model: Probe, data: BrodenDataset, quantile: float, denominator: str = "mask",
                depth: int = 2) -> np.ndarray:
    items = [data[i] for i in range(len(data))]
    images = torch.from_numpy(np.stack([im for im, _ in items])).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        acts = model.features[:depth](images)
    flat = acts.permute(0, 2, 3, 1).reshape(-1, 6).numpy()
    level = np.quantile(flat, 1 - quantile, axis=0, method="inverted_cdf")
    masks = F.interpolate(acts, size=(32, 32), mode="bilinear", align_corners=False).numpy() > level[None, :, None, None]
    primary = {lab.number: lab.category for lab in data.labels}
    iou = np.zeros((6, data.num_labels))
    for number, category in primary.items():
        inter, unit_area, label_area = np.zeros(6), np.zeros(6), 0
        for i, (_, labels) in enumerate(items):
            stacked = np.stack([m for c in data.categories for m in labels[c]])
            of_category = np.isin(stacked, [n for n, c in primary.items() if c == category]).any(0)
            lab = (stacked == number).any(0)
            label_area += lab.sum()
            inter += (masks[i] & lab[None]).reshape(6, -1).sum(1)
            for unit in range(6):
                carries = (masks[i][unit] & of_category).any() if denominator == "mask" else of_category.any()
                if carries:
                    unit_area[unit] += masks[i][unit].sum()
        union = unit_area + label_area - inter
        iou[:, number] = np.where(union > 0, inter / np.maximum(union, 1), 0)
    return iou


@pytest.mark.parametrize("denominator", ["mask", "image"])
def test_matches_brute_force(probe: BrodenDataset, denominator: str) -> None:
    model = Probe()
    config = NetDissectConfig(quantile=0.02, batch_size=3, denominator=denominator, precision="fp32")
    table = netdissect(model, ["features.1"], probe, config)["features.1"]
    np.testing.assert_allclose(table.iou, brute_force(model, probe, 0.02, denominator), rtol=1e-5, atol=1e-7)
    assert table.images == 10 and table.top_images.shape == (6, 10)


@pytest.mark.parametrize("denominator", ["mask", "image"])
def test_matches_brute_force_on_an_upsampled_layer(probe: BrodenDataset, denominator: str) -> None:
    """An 8 x 8 layer upsampled to the 32 x 32 labels: the tally crops each firing map to where it
    can cross its level (``dissect_core.crops``), and the IoU is the whole maps' brute force's."""
    from dissect_core.crops import crops_apply

    assert crops_apply(8, 8, 32)
    model = Probe()
    config = NetDissectConfig(quantile=0.05, batch_size=3, denominator=denominator, precision="fp32")
    table = netdissect(model, ["features.2"], probe, config)["features.2"]
    np.testing.assert_allclose(table.iou, brute_force(model, probe, 0.05, denominator, depth=3), rtol=1e-5, atol=1e-7)
    assert table.iou.max() > 0


def test_lite_denominators_are_smaller(probe: BrodenDataset) -> None:
    lite, image = (netdissect(Probe(), ["features.1"], probe, NetDissectConfig(quantile=0.02, denominator=d))["features.1"]
                   for d in ("mask", "image"))
    assert (lite.unit_area <= image.unit_area).all() and (lite.unit_area < image.unit_area).any()
    assert (lite.iou >= image.iou - 1e-7).all()


def test_tally_csv_has_netdissect_lite_columns(probe: BrodenDataset) -> None:
    table = netdissect(Probe(), ["features.1"], probe, NetDissectConfig(quantile=0.02))["features.1"]
    rows = list(csv.DictReader(io.StringIO(tally_csv(table))))
    assert len(rows) == 6
    assert list(rows[0])[:4] == ["unit", "category", "label", "score"]
    assert {"object-label", "object-truth", "object-activation", "object-intersect", "object-iou"} <= set(rows[0])
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert sorted(int(r["unit"]) for r in rows) == list(range(1, 7))
    top = rows[0]
    unit = int(top["unit"]) - 1
    assert float(top["score"]) == pytest.approx(table.iou[unit].max(), abs=1e-6)
    # Lite writes no label (and zero counts) for a category where every IoU of the unit is 0
    table.iou[:, [n for n, (_, c) in enumerate(table.labels) if c == "material"]] = 0
    for row in csv.DictReader(io.StringIO(tally_csv(table))):
        assert row["material-label"] == "" and float(row["material-iou"]) == 0 and row["material-intersect"] == "0"


def test_unique_detector_rules(probe: BrodenDataset) -> None:
    table = netdissect(Probe(), ["features.1"], probe, NetDissectConfig(quantile=0.02, min_iou=0.0))["features.1"]
    by_category = unique_detectors(table)
    by_top = unique_detectors(table, rule="top")
    assert sum(v["count"] for v in by_top.values()) <= sum(v["count"] for v in by_category.values())
    assert by_category["color"]["count"] >= 1


def test_class_drivers() -> None:
    model = Probe()
    with torch.no_grad():
        model.fc.weight.zero_()
        model.fc.weight[2, 1] = 5.0
        model.fc.weight[0, 1] = 1.0
    assert class_drivers(model, 1, k=2) == [(2, 5.0), (0, 1.0)]


def test_cancel(probe: BrodenDataset) -> None:
    with pytest.raises(InterruptedError):
        netdissect(Probe(), ["features.1"], probe, NetDissectConfig(batch_size=2), cancelled=lambda: True)


class CountingProbe(BrodenDataset):
    """Counts how often each image and its labels are decoded."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.reads = 0

    def __getitem__(self, index: int):
        self.reads += 1
        return super().__getitem__(index)


def test_each_probe_image_is_decoded_once(probe: BrodenDataset) -> None:
    counting = CountingProbe(probe.root)
    table = netdissect(Probe(), ["features.1"], counting, NetDissectConfig(quantile=0.02, batch_size=3, precision="fp32"))["features.1"]
    assert counting.reads == len(probe)
    # past the memory budget the tally decodes and runs again, with the same result
    again = CountingProbe(probe.root)
    spilled = netdissect(Probe(), ["features.1"], again, NetDissectConfig(quantile=0.02, batch_size=3, precision="fp32",
                                                                          max_cached_bytes=0))["features.1"]
    assert again.reads == 2 * len(probe)
    np.testing.assert_array_equal(spilled.iou, table.iou)
