"""GAN dissection equals a brute-force computation; tables round-trip; torchrun shards agree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dissect_core.causal import ablation_effect, label_counts, rank_units, single_unit_effects
from dissect_core.gandissect import DissectConfig, dissect
from dissect_core.tables import TABLE_VERSION, TableError, cache_key, cached_table, load_table, save_table
from models.checkpoints import save_weights
from models.proggan import ProgressiveGenerator
from models.samples import z_tensor
from tests.fake_segmenter import ColourRuleSegmenter


def brute_force(dissect_generator: ProgressiveGenerator, layer: str, samples: int, quantile: float, size: int) -> dict:
    """Everything in memory, numpy quantiles, direct IoU with category-aware denominators."""
    z = z_tensor(range(samples), dissect_generator.z_dim)
    with torch.no_grad():
        acts = dissect_generator.forward_to(layer, z)
        images = dissect_generator.forward_from(layer, acts)
    seg = ColourRuleSegmenter()(images.clamp(-1, 1))
    step = images.shape[-1] // size
    seg = seg[..., step // 2 :: step, step // 2 :: step]
    flat = acts.permute(0, 2, 3, 1).reshape(-1, acts.shape[1]).numpy()
    level = np.quantile(flat, 1 - quantile, axis=0, method="inverted_cdf")
    up = F.interpolate(acts, size=(size, size), mode="bilinear", align_corners=False).numpy()
    masks = up > level[None, :, None, None]
    labels = seg.numpy()
    category_of = {1: 0, 2: 0, 3: 1}
    iou = np.zeros((acts.shape[1], 4))
    for u in range(acts.shape[1]):
        for label, cat in category_of.items():
            inter = union_unit = label_area = 0
            for i in range(samples):
                present = (labels[i] > 0) & (np.vectorize(lambda x: category_of.get(int(x), -1))(labels[i]) == cat)
                lab = (labels[i] == label).any(0)
                inter += (masks[i, u] & lab).sum()
                label_area += lab.sum()
                if present.any():
                    union_unit += masks[i, u].sum()
            iou[u, label] = inter / (union_unit + label_area - inter) if union_unit + label_area - inter else 0
    return {"level": level, "iou": iou}


def test_dissect_matches_brute_force(dissect_generator: ProgressiveGenerator) -> None:
    config = DissectConfig(samples=24, batch_size=7, quantile=0.05, label_size=16, topk=3, threshold="quantile")
    table = dissect(dissect_generator, ["layer4"], ColourRuleSegmenter(), config)["layer4"]
    expected = brute_force(dissect_generator, "layer4", 24, 0.05, 16)
    np.testing.assert_allclose(table.level, expected["level"], rtol=1e-6)
    np.testing.assert_allclose(table.iou, expected["iou"], rtol=1e-5, atol=1e-7)
    assert table.top_images.shape == (12, 3)
    # top images really are the images with the highest spatial max
    with torch.no_grad():
        acts = dissect_generator.forward_to("layer4", z_tensor(range(24), 16))
    best = acts.flatten(2).amax(2).argmax(0)
    assert table.top_images[:, 0].tolist() == best.tolist()


def test_unit_summary_and_rankings(dissect_generator: ProgressiveGenerator) -> None:
    table = dissect(dissect_generator, ["layer4"], ColourRuleSegmenter(), DissectConfig(samples=16, label_size=16))["layer4"]
    summary = table.unit_summary(0)
    assert summary["label"] in ("warm", "cool", "bright")
    assert summary["iou"] == pytest.approx(table.iou[0].max())
    ranking = table.concept_ranking("warm")
    assert sorted(ranking) == list(range(12))
    assert table.iou[ranking[0], 1] == table.iou[:, 1].max()
    with pytest.raises(KeyError):
        table.concept_ranking("dragon")


def test_causal_ranking_and_ablation(dissect_generator: ProgressiveGenerator) -> None:
    seg = ColourRuleSegmenter()
    ids = list(range(100, 108))
    effects = single_unit_effects(dissect_generator, "layer4", seg, ids, batch_size=4)
    assert effects.shape == (12, 4)
    # the effect of unit 5 equals a direct measurement of ablating unit 5 alone
    direct = ablation_effect(dissect_generator, "layer4", seg, 1, [[5]], ids)[0]
    assert effects[5, 1] == pytest.approx(direct, abs=1e-9)
    table = dissect(dissect_generator, ["layer4"], seg, DissectConfig(samples=8, label_size=16))["layer4"]
    rank_units(table, effects)
    assert table.concept_ranking("warm") == [int(u) for u in np.argsort(-effects[:, 1], kind="stable")]
    assert table.causal_effect["warm"][0] == pytest.approx(effects[:, 1].max())


def test_label_counts() -> None:
    maps = torch.tensor([[[[1, 1], [2, 0]]], [[[3, 3], [3, 3]]]])
    assert label_counts(maps, 4).tolist() == [[1, 2, 1, 0], [0, 0, 0, 4]]


def test_table_round_trip_and_cache(tmp_path: Path, dissect_generator: ProgressiveGenerator, caplog) -> None:
    table = dissect(dissect_generator, ["layer4"], ColourRuleSegmenter(), DissectConfig(samples=8, label_size=16))["layer4"]
    save_table(table, tmp_path / "t", {"model": "test"})
    loaded = load_table(tmp_path / "t")
    np.testing.assert_array_equal(loaded.iou, table.iou)
    assert loaded.config == table.config and loaded.labels == [tuple(x) for x in table.labels]
    document = json.loads((tmp_path / "t" / "table.json").read_text())
    assert document["version"] == TABLE_VERSION and len(document["units"]) == 12 and "warm" in document["concepts"]

    key = cache_key("abc", "layer4", table.config, "seg")
    assert key != cache_key("abd", "layer4", table.config, "seg")
    assert key != cache_key("abc", "layer4", DissectConfig(samples=9, label_size=16), "seg")
    calls = []
    compute = lambda: calls.append(1) or table
    cached_table(tmp_path / "cache", key, compute)
    cached_table(tmp_path / "cache", key, compute)
    assert len(calls) == 1
    (tmp_path / "cache" / key / "arrays.npz").write_bytes(b"garbage")
    with caplog.at_level("WARNING"):
        again = cached_table(tmp_path / "cache", key, compute)
    assert len(calls) == 2 and "damaged" in caplog.text
    np.testing.assert_array_equal(again.iou, table.iou)
    with pytest.raises(TableError, match="unreadable"):
        load_table(tmp_path / "missing")


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").exists(),
                    reason="torchrun not installed")
@pytest.mark.parametrize("threshold", ["quantile", "iqr"])
def test_two_processes_give_the_same_table(tmp_path: Path, dissect_generator: ProgressiveGenerator, threshold: str) -> None:
    ckpt = save_weights(dissect_generator.state_dict(), tmp_path / "g.safetensors")
    common = ["--model", str(ckpt), "--layer", "layer4", "--layer", "layer2", "--samples", "20", "--batch-size", "3",
              "--threshold", threshold,
              "--segmenter", "tests.fake_segmenter:make", "--causal-samples", "0", "--no-report", "--no-progress",
              "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "server.cli", "dissect", *common, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0, one.stderr
    torchrun = str(Path(sys.executable).parent / "torchrun")
    two = subprocess.run([torchrun, "--standalone", "--nproc-per-node=2", "-m", "server.cli", "dissect", *common,
                          "--out", str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    for layer in ("layer4", "layer2"):
        a, b = load_table(tmp_path / "one" / layer), load_table(tmp_path / "two" / layer)
        for name in ("iou", "level", "q99", "top_images", "top_scores") + (("iqr",) if threshold == "iqr" else ()):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=f"{layer} {name}")
        np.testing.assert_array_equal(a.concept_cells, b.concept_cells)
        np.testing.assert_allclose(a.concept_features, b.concept_features, rtol=1e-6)  # float64 sums, other order
    assert json.loads((tmp_path / "two" / "layer4" / "table.json").read_text())["provenance"]["processes"] == 2


def test_concept_features_are_mean_features_of_covered_cells(dissect_generator: ProgressiveGenerator) -> None:
    config = DissectConfig(samples=12, batch_size=5, label_size=16, threshold="quantile")
    table = dissect(dissect_generator, ["layer4"], ColourRuleSegmenter(), config)["layer4"]
    z = z_tensor(range(12), dissect_generator.z_dim)
    with torch.no_grad():
        acts = dissect_generator.forward_to("layer4", z)
        images = dissect_generator.forward_from("layer4", acts)
    labels = ColourRuleSegmenter()(images.clamp(-1, 1))[..., 1::2, 1::2].numpy()  # (12, 2, 16, 16)
    feats = acts.numpy()
    for label in range(1, 4):
        share = (labels == label).sum(1).reshape(12, 8, 2, 8, 2).mean((2, 4))  # (12, 8, 8) per 2x2 cell
        covered = share >= 0.5
        assert table.concept_cells[label] == covered.sum()
        if covered.any():
            expected = feats.transpose(0, 2, 3, 1)[covered].mean(0)
            np.testing.assert_allclose(table.concept_features[label], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("threshold", ["quantile", "iqr"])
def test_a_stopped_build_resumes_to_the_same_table(tmp_path: Path, dissect_generator: ProgressiveGenerator,
                                                   threshold: str) -> None:
    """Stop a checkpointed build in each pass (levels, iou, causal), start it again: it continues from
    the last checkpoint, computes no batch twice, and ends with the table of a run that never stopped."""
    from dissect_core.build import DISSECT_SHARE, build_layer_tables

    config = DissectConfig(samples=64, batch_size=8, label_size=16, threshold=threshold)
    seg = ColourRuleSegmenter()
    reference = build_layer_tables(dissect_generator, ["layer4"], seg, config, causal_samples=6)["layer4"]
    checkpoints = tmp_path / "partial"
    for stop_at in ("levels", "iou", "causal layer4"):
        seen: list[tuple[str, float]] = []

        def progress(stage: str, fraction: float) -> None:
            seen.append((stage, fraction))
            if stage == stop_at and len([s for s, _ in seen if s == stage]) == 4:
                raise InterruptedError("stopped")

        with pytest.raises(InterruptedError):
            build_layer_tables(dissect_generator, ["layer4"], seg, config, 6, progress, checkpoint_dir=checkpoints,
                               checkpoint_every_s=0)
    seen = []
    resumed = build_layer_tables(dissect_generator, ["layer4"], seg, config, 6, lambda s, f: seen.append((s, f)),
                                 checkpoint_dir=checkpoints, checkpoint_every_s=0)["layer4"]
    # the last run went on from the causal checkpoint: no dissection batch and no early causal step again
    assert [s for s, _ in seen if s in ("levels", "calibrate")] == []
    assert seen[0][1] >= DISSECT_SHARE - 1e-9
    assert min(f for s, f in seen if s == "causal layer4") > DISSECT_SHARE + 0.3 * 4 / 12  # 4 of 12 units were done
    for name in ("iou", "level", "q99", "top_images", "concept_features"):
        assert np.array_equal(getattr(resumed, name), getattr(reference, name)), name
    assert resumed.causal == reference.causal and resumed.causal_effect == reference.causal_effect


def test_a_checkpoint_of_other_work_is_never_resumed(tmp_path: Path, dissect_generator: ProgressiveGenerator) -> None:
    from dissect_core.resume import Checkpoint

    checkpoint = Checkpoint(tmp_path / "c.pt", {"model": "a"}, every_s=0)
    checkpoint.save({"stage": "levels", "done": 3})
    assert Checkpoint(tmp_path / "c.pt", {"model": "a"}).load() == {"stage": "levels", "done": 3}
    assert Checkpoint(tmp_path / "c.pt", {"model": "b"}).load() is None
    (tmp_path / "c.pt").write_bytes(b"PK\x03\x04 torn")
    assert Checkpoint(tmp_path / "c.pt", {"model": "a"}).load() is None
