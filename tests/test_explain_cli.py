"""featviz, topk and netdissect commands on the tiny zoo: files written, numbers sane, errors clean."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from server.cli import main


@pytest.fixture(autouse=True)
def _zoo(tiny_zoo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GANPAINT_ZOO_DIR", str(tiny_zoo))
    monkeypatch.setenv("GANPAINT_CACHE_DIR", str(tmp_path / "cache"))


def test_netdissect_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["netdissect", "--model", "tiny/classifier", "--samples", "24", "--out", str(tmp_path / "nd"),
                 "--strips", "3", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    layer_dir = tmp_path / "nd" / "features.block4"
    rows = list(csv.DictReader((layer_dir / "tally.csv").open()))
    assert len(rows) == summary["layers"]["features.block4"]["units"] == 64
    document = json.loads((layer_dir / "netdissect.json").read_text())
    assert set(document["unique_detectors"]) == {"object", "material", "color", "scene"}
    assert len(list((layer_dir / "image").glob("unit*.png"))) == 3
    assert "units with IoU" in (layer_dir / "report.html").read_text()


def test_featviz_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "fv.png"
    assert main(["featviz", "--model", "tiny/classifier", "--layer", "features.block3", "--unit", "1", "--unit", "2",
                 "--steps", "24", "--out", str(out), "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["final_objective"] > report["start_objective"]
    assert Image.open(out).size == (128, 64)


def test_topk_command(tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    assert main(["topk", "--model", "tiny/classifier", "--layer", "features.block2", "--images", str(folder),
                 "--k", "3", "--unit", "0", "--unit", "5", "--out", str(tmp_path / "tk"), "--no-progress"]) == 0
    assert Image.open(tmp_path / "tk" / "unit0005.png").size == (3 * 64, 64)


@pytest.mark.parametrize(("args", "message"), [
    (["featviz", "--model", "tiny/classifier", "--layer", "nope", "--unit", "1", "--out", "x.png"], "unknown layer"),
    (["featviz", "--model", "tiny/classifier", "--layer", "features.block2", "--unit", "9999", "--out", "x.png"],
     "--unit 9999 is out of range"),
    (["featviz", "--model", "tiny/classifier", "--layer", "features.block2", "--unit", "-1", "--out", "x.png"],
     "--unit -1 is out of range"),
    (["topk", "--model", "tiny/classifier", "--layer", "features.block2", "--unit", "9999", "--out", "x"],
     "--unit 9999 is out of range"),
    (["netdissect", "--model", "tiny/classifier", "--probe", "/nonexistent", "--out", "x"], "error:"),
    (["topk", "--model", "tiny/nothing", "--out", "x"], "no zoo model"),
    (["featviz", "--unit", "1"], "the following arguments are required: --out"),
])
def test_bad_input_exits_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """One line naming the problem (no usage block, no traceback), exit status 2."""
    try:
        status = main(args)
    except SystemExit as exc:  # argparse's own checks
        status = exc.code
    assert status == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_dynamics_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dynamics", "--model", "tiny", "--segmenter", "tiny/segmenter", "--layer", "layer2", "--samples", "16",
                 "--out", str(tmp_path / "dyn")]) == 0
    rows = json.loads((tmp_path / "dyn" / "dynamics.json").read_text())
    assert rows[-1]["name"] == "final" and len(rows) == 3  # two snapshots + final
    assert set(rows[0]["detectors"]) == {"object", "material", "color"}
    assert "<svg" in (tmp_path / "dyn" / "dynamics.svg").read_text()
    assert "| final |" in (tmp_path / "dyn" / "dynamics.md").read_text()


def test_cache_info_and_clear(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "cache"
    (root / "world").mkdir(parents=True)
    (root / "world" / "a.npz").write_bytes(b"x" * 1000)
    (root / "dissect" / "k").mkdir(parents=True)
    (root / "dissect" / "k" / "table.json").write_bytes(b"y" * 10)
    assert main(["cache", "info", "--cache-dir", str(root)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["bytes"] == 1010 and info["parts"] == {"dissect": 10, "world": 1000}
    assert main(["cache", "clear", "--only", "world", "--cache-dir", str(root)]) == 0
    assert json.loads(capsys.readouterr().out)["freed_bytes"] == 1000
    assert not (root / "world").exists() and (root / "dissect").exists()
    assert main(["cache", "clear", "--cache-dir", str(root)]) == 0
    assert not root.exists()


def test_brushes_command_learns_weights_and_a_gallery(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """dissect, then learn the brushes into the table: the painter's draw becomes the learned rule."""
    from dissect_core.intervene import brush_edit
    from dissect_core.tables import load_table

    out = tmp_path / "d"
    assert main(["dissect", "--model", "tiny", "--layer", "layer4", "--samples", "24", "--out", str(out),
                 "--no-report", "--causal-samples", "0", "--no-progress"]) == 0
    table = load_table(out / "layer4")
    present = [name for n, (name, cat) in enumerate(table.labels)
               if cat in ("object", "material") and table.concept_feature(name) is not None]
    assert present, "the tiny segmenter labels nothing"
    capsys.readouterr()
    assert main(["brushes", "--model", "tiny", "--table", str(out / "layer4"), "--concepts", *present[:2],
                 "--samples", "24", "--steps", "4", "--gallery-samples", "6", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    learned = [c for c, e in report["concepts"].items() if "skipped" not in e]
    assert learned
    table = load_table(out / "layer4")
    for concept in learned:
        assert table.insertion(concept) == "learned"
        edit = brush_edit(table, concept, "add", 0.5)
        assert edit.weights and all(0 < w <= 1 for w in edit.weights)
        if "gallery" in report["concepts"][concept]:
            assert table.gallery[concept]["unit"] == report["concepts"][concept]["gallery"]["unit"]
        entry = report["concepts"][concept]
        assert entry["brush"] in ("learned", "top_units") and set(entry["validation"]) == {"learned", "top_units"}
        # the painter writes the stored vector with the stored weights
        number = table.label_number(concept)
        assert edit.values == tuple(float(table.insertion_value[number][u]) for u in edit.units)
    first = learned[0]
    assert json.loads((out / "layer4" / "table.json").read_text())["provenance"]["insertion"][first]["steps"] == 4
    # a later run for one concept, from gandissect's top units, keeps the other concepts' record
    assert main(["brushes", "--model", "tiny", "--table", str(out / "layer4"), "--concepts", first, "--start", "units",
                 "--fixed-vector", "--samples", "24", "--steps", "2", "--no-gallery", "--no-progress"]) == 0
    insertion = json.loads((out / "layer4" / "table.json").read_text())["provenance"]["insertion"]
    assert insertion[first]["start"] == "units" and insertion[first]["steps"] == 2
    assert all(insertion[c]["start"] == "mean" for c in learned[1:])
    assert main(["brushes", "--model", "tiny", "--table", str(out / "layer4"), "--concepts", "unicorn"]) == 2
