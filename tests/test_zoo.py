"""Zoo export, registry and evaluation on tiny trained runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models import evaluate
from models.checkpoints import file_sha256
from models.zoo import ZooError, get_entry, list_zoo, load_model, resolve_weights
from server.cli import main


def test_registry_resolves_ids(tiny_zoo: Path) -> None:
    entries = list_zoo(tiny_zoo)
    assert set(entries) == {"tiny", "tiny/segmenter", "tiny/classifier", "tiny/encoder"}
    generator = load_model("tiny", zoo_dir=tiny_zoo)
    assert generator.resolution == 16 and next(generator.parameters()).dtype == torch.float32
    assert load_model("tiny/classifier", zoo_dir=tiny_zoo)(torch.zeros(2, 3, 16, 16)).shape == (2, 4)
    assert resolve_weights("tiny", tiny_zoo).name == "generator.safetensors"
    encoder = load_model("tiny/encoder", zoo_dir=tiny_zoo)
    assert encoder(torch.zeros(2, 3, 16, 16)).shape == (2, 16, 8, 8)  # tiny's layer4: 16 units at 8x8
    card = entries["tiny/encoder"].card
    assert card["architecture"]["generator"].endswith("generator.safetensors")
    assert set(card["metrics"]) >= {"cosine_mean", "psnr_mean_db"} and -1 <= card["metrics"]["cosine_mean"] <= 1


def test_cards_describe_the_files(tiny_zoo: Path) -> None:
    for entry in list_zoo(tiny_zoo).values():
        card = entry.card
        assert card["sha256"] == file_sha256(entry.weights)
        assert card["bytes"] == entry.weights.stat().st_size
        assert card["dtype"] == "float16"
        assert card["training"]["command"].startswith("ganpaint train")
        assert (entry.weights.parent / f"{entry.kind}.md").read_text().startswith(f"# {entry.id}")
    gen = get_entry("tiny", tiny_zoo)
    assert len(gen.card["snapshots"]) == 2 and all((tiny_zoo / "tiny" / s).exists() for s in gen.card["snapshots"])


def test_export_without_snapshots(tiny_zoo: Path, tmp_path: Path) -> None:
    from server.cli import main

    runs = tiny_zoo.parent / "runs"
    assert main(["zoo", "export", "gan", "--run-dir", str(runs / "gan"), "--name", "lean", "--zoo-dir", str(tmp_path),
                 "--no-snapshots"]) == 0
    lean = get_entry("lean", tmp_path)
    assert "snapshots" not in lean.card and not (tmp_path / "lean" / "snapshots").exists()
    assert lean.card["sha256"] == get_entry("tiny", tiny_zoo).card["sha256"]  # the same generator


def test_unknown_or_bad_ids(tiny_zoo: Path) -> None:
    with pytest.raises(ZooError, match="no zoo model 'nope'; known ids: tiny"):
        get_entry("nope", tiny_zoo)
    with pytest.raises(ZooError, match="not a valid zoo id"):
        get_entry("../etc/passwd", tiny_zoo)


def test_evaluate_writes_metrics_into_the_card(tiny_zoo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "segmenter", "--model", "tiny/segmenter", "--count", "10", "--write-card",
                 "--zoo-dir", str(tiny_zoo)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert 0 <= report["mean_iou"] <= 1 and set(report["iou"]) >= {"tree", "dome", "brick"}
    card = get_entry("tiny/segmenter", tiny_zoo).card
    assert card["metrics"]["mean_iou"] == report["mean_iou"]
    assert "## Metrics" in (tiny_zoo / "tiny" / "segmenter.md").read_text()


def test_generator_report_runs_and_floor_is_small(tiny_zoo: Path) -> None:
    g = load_model("tiny", zoo_dir=tiny_zoo)
    report = evaluate.generator_report(g, load_model("tiny/segmenter", zoo_dir=tiny_zoo),
                                       load_model("tiny/classifier", zoo_dir=tiny_zoo), samples=40)
    assert report["frechet_floor"] >= 0 and report["frechet_distance"] >= 0
    assert set(report["concepts"]["sky"]) >= {"sample_presence", "world_presence", "world_pixels"}
    assert 0.9 < report["concepts"]["sky"]["world_presence"] <= 1.0


def test_frechet_distance_properties() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4000, 3))
    b = rng.normal(size=(4000, 3)) + np.array([3.0, 0, 0])
    assert evaluate.frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    assert evaluate.frechet_distance(a, b) == pytest.approx(9.0, rel=0.05)
    c = rng.normal(size=(4000, 3)) * 2  # variances 4: (2-1)^2 * 3 = 3
    assert evaluate.frechet_distance(a, c) == pytest.approx(3.0, rel=0.1)
