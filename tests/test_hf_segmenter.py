"""Real-scene segmenters through transformers (``hf:<dir|id>``), offline: tiny SegFormer and UperNet
models built from configs here and saved with ``save_pretrained``; nothing is downloaded."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from dissect_core.hf_segmenter import BRUSH_CONCEPTS, HFSegmenter, label_name  # noqa: E402
from dissect_core.segmenters import load_segmenter  # noqa: E402

# a slice of ADE20K's id2label as SegFormer checkpoints spell it (aliases after ';' or ',', a trailing space)
ADE_NAMES = ["wall", "building;edifice", "sky", "floor;flooring", "tree", "road;route", "windowpane;window",
             "grass", "door;double;door", "house", "streetlight;street;lamp", "tower", "palm, palm tree", "bed "]
EXPECTED_LABELS = [("-", ""), ("wall", "object"), ("building", "object"), ("sky", "object"), ("floor", "object"),
                   ("tree", "object"), ("road", "object"), ("window", "object"), ("grass", "object"),
                   ("door", "object"), ("lamp", "object"), ("tower", "object"), ("bed", "object")]


def _label_config() -> dict:
    id2label = dict(enumerate(ADE_NAMES))
    return {"num_labels": len(ADE_NAMES), "id2label": id2label, "label2id": {n: i for i, n in id2label.items()}}


def _save(model: torch.nn.Module, directory: Path, size: int = 32) -> Path:
    model.save_pretrained(directory)
    transformers.SegformerImageProcessor(size={"height": size, "width": size}).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def segformer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    config = transformers.SegformerConfig(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
                                          num_attention_heads=[1, 1], patch_sizes=[7, 3], strides=[4, 2],
                                          mlp_ratios=[2, 2], decoder_hidden_size=16, **_label_config())
    return _save(transformers.SegformerForSemanticSegmentation(config), tmp_path_factory.mktemp("segformer"))


@pytest.fixture(scope="module")
def upernet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    backbone = transformers.ConvNextConfig(hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1],
                                           out_features=["stage1", "stage2", "stage3", "stage4"])
    config = transformers.UperNetConfig(backbone_config=backbone, hidden_size=16, use_auxiliary_head=False,
                                        pool_scales=[1, 2], **_label_config())
    return _save(transformers.UperNetForSemanticSegmentation(config), tmp_path_factory.mktemp("upernet"))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to open a connection fails the test."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a network connection was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_label_names_drop_aliases_and_spaces() -> None:
    assert [label_name(n) for n in ("windowpane;window", "palm, palm tree", "bed ", "Sky")] == \
        ["windowpane", "palm", "bed", "sky"]
    # the documented table maps ADE20K names onto brush concepts
    assert BRUSH_CONCEPTS["streetlight"] == "lamp" and BRUSH_CONCEPTS["house"] == "building"
    assert BRUSH_CONCEPTS["windowpane"] == "window" and BRUSH_CONCEPTS["palm"] == "tree"


def test_segformer_loads_from_dir_and_maps_labels(segformer_dir: Path, no_network: None) -> None:
    segmenter = load_segmenter(f"hf:{segformer_dir}")
    assert isinstance(segmenter, HFSegmenter)
    assert segmenter.labels == EXPECTED_LABELS
    assert segmenter.categories == ("object",) and segmenter.input_size == (32, 32)
    assert segmenter.identity == f"hf:{segformer_dir}"
    by_name = {name: i for i, (name, _) in enumerate(segmenter.labels)}
    # palm and tree are one brush concept; house and building too; the rest keep their own names
    mapping = segmenter.class_to_label.tolist()
    assert mapping[ADE_NAMES.index("palm, palm tree")] == mapping[ADE_NAMES.index("tree")] == by_name["tree"]
    assert mapping[ADE_NAMES.index("house")] == mapping[ADE_NAMES.index("building;edifice")] == by_name["building"]
    assert mapping[ADE_NAMES.index("streetlight;street;lamp")] == by_name["lamp"]


def test_segformer_labels_equal_the_processor_pipeline(segformer_dir: Path) -> None:
    """At the native size our tensor path gives the same class scores as transformers' own processor."""
    from PIL import Image

    segmenter = load_segmenter(f"hf:{segformer_dir}")
    pixels = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    processor = transformers.AutoImageProcessor.from_pretrained(segformer_dir, local_files_only=True)
    inputs = processor(images=[Image.fromarray(p) for p in pixels], return_tensors="pt")
    model = transformers.AutoModelForSemanticSegmentation.from_pretrained(segformer_dir, local_files_only=True).eval()
    with torch.no_grad():
        reference = torch.nn.functional.interpolate(model(**inputs).logits, size=(32, 32), mode="bilinear",
                                                    align_corners=False)
        ours = segmenter.logits(images)
    assert torch.allclose(ours, reference, atol=1e-4), float((ours - reference).abs().max())
    labels = segmenter(images)
    assert labels.shape == (2, 1, 32, 32) and labels.dtype == torch.long
    assert torch.equal(labels[:, 0], segmenter.class_to_label[reference.argmax(1)])


def test_concept_probability_sums_members_and_has_gradients(segformer_dir: Path) -> None:
    segmenter = load_segmenter(f"hf:{segformer_dir}")
    images = (torch.rand(1, 3, 48, 48) * 2 - 1).requires_grad_(True)
    tree = [name for name, _ in segmenter.labels].index("tree")
    probability = segmenter.concept_probability(images, tree)
    assert probability.shape == (1, 48, 48)
    softmax = segmenter.logits(images).softmax(1)
    expected = softmax[:, ADE_NAMES.index("tree")] + softmax[:, ADE_NAMES.index("palm, palm tree")]
    assert torch.allclose(probability, expected, atol=1e-6)
    probability.mean().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="not one of"):
        segmenter.concept_probability(images, 99)


def test_upernet_loads_and_labels_at_image_size(upernet_dir: Path, no_network: None) -> None:
    segmenter = load_segmenter(f"hf:{upernet_dir}")
    assert segmenter.labels == EXPECTED_LABELS and segmenter.metadata["architecture"] == "UperNetForSemanticSegmentation"
    labels = segmenter(torch.rand(3, 3, 64, 64) * 2 - 1)
    assert labels.shape == (3, 1, 64, 64)
    assert set(labels.unique().tolist()) <= set(range(1, len(EXPECTED_LABELS)))


def test_missing_model_names_the_fetch_command_without_network(no_network: None, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ValueError, match="ganpaint zoo fetch-segmenter nobody/no-such-segmenter"):
        load_segmenter("hf:nobody/no-such-segmenter")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no transformers segmentation model"):
        load_segmenter(f"hf:{empty}")
    with pytest.raises(ValueError, match="needs a model id"):
        load_segmenter("hf:")


def test_dissect_cli_with_hf_segmenter_on_a_released_format_generator(segformer_dir: Path, tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture,
                                                                      no_network: None) -> None:
    from server.cli import main
    from tests.conftest import released_state_dict

    weights = tmp_path / "churchoutdoor_lsun.pth"
    torch.save(released_state_dict([16, 16, 16, 8, 8], seed=3), weights)
    code = main(["dissect", "--model", str(weights), "--layer", "layer4", "--samples", "12", "--batch-size", "6",
                 "--segmenter", f"hf:{segformer_dir}", "--causal-samples", "0", "--no-report", "--no-progress",
                 "--out", str(tmp_path / "out")])
    assert code == 0
    table = json.loads((tmp_path / "out" / "layer4" / "table.json").read_text())
    assert [tuple(label) for label in table["labels"]] == EXPECTED_LABELS
    assert table["provenance"]["segmenter"] == f"hf:{segformer_dir}"
    assert len(table["units"]) == 16
    capsys.readouterr()
    # a missing model is one clear error, exit 2, naming the fetch command
    code = main(["dissect", "--model", str(weights), "--layer", "layer4", "--samples", "4", "--no-progress",
                 "--segmenter", "hf:nobody/no-such-segmenter", "--out", str(tmp_path / "out2")])
    assert code == 2 and "ganpaint zoo fetch-segmenter nobody/no-such-segmenter" in capsys.readouterr().err


def test_server_dissects_a_released_model_with_hf_segmenter(segformer_dir: Path, tmp_path: Path,
                                                            tiny_zoo: Path, no_network: None) -> None:
    """GANPAINT_MODELS_DIR + GANPAINT_SEGMENTER=hf:... -> the table is built on first use, brushes paint."""
    from fastapi.testclient import TestClient

    from server.app import create_app
    from server.schemas import MaskSpec
    from tests.conftest import released_state_dict
    from tests.test_server import make_settings

    models_dir = tmp_path / "models"
    models_dir.mkdir()
    torch.save(released_state_dict([16, 16, 16, 8, 8], seed=2), models_dir / "churchoutdoor_lsun.pth")
    app = create_app(make_settings(tiny_zoo, tmp_path, models_dir=models_dir, segmenter=f"hf:{segformer_dir}",
                                   causal_samples=0, dissect_samples=12))
    with TestClient(app) as client:
        first = client.get("/api/models/churchoutdoor_lsun/layers/layer4/brushes")  # first use: its edit layer's build is queued
        assert first.status_code in (200, 503)
        if first.status_code == 503:
            assert first.json()["error"]["code"] == "tables_building"
        app.state.ganpaint.jobs.wait_idle(120)
        ready = client.get("/readyz").json()
        tables = {m["id"]: m["tables"] for m in ready["models"]}["churchoutdoor_lsun"]
        assert tables["layer4"]["status"] == "ready" and tables["layer4"]["progress"] == 1.0
        brushes = client.get("/api/models/churchoutdoor_lsun/layers/layer4/brushes").json()
        names = {b["name"] if isinstance(b, dict) else b for b in brushes.get("brushes", brushes)}
        assert names and names <= {name for name, _ in EXPECTED_LABELS[1:]}
        mask = np.zeros((32, 32), bool)
        mask[8:24, 8:24] = True
        brush = sorted(names)[0]
        body = {"v": 1, "model": "churchoutdoor_lsun", "sample": 1,
                "strokes": [{"brush": brush, "strength": 1.0, "mask": MaskSpec.from_array(mask).model_dump()}]}
        edited = client.post("/api/render", json=body)
        plain = client.get("/api/models/churchoutdoor_lsun/samples/1.png")
        assert edited.status_code == 200, edited.text
        assert edited.content != plain.content


def test_fetch_segmenter_command(segformer_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture) -> None:
    """The fetch command downloads (here: a stand-in for the hub) and proves the model loads offline."""
    import dissect_core.hf_segmenter as hf
    from server.cli import main

    calls = []

    def fake_snapshot_download(model_id: str, cache_dir: str | None = None, **kwargs: object) -> str:
        calls.append((model_id, cache_dir))
        return str(segformer_dir)

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert main(["zoo", "fetch-segmenter", "nvidia/segformer-b0-finetuned-ade-512-512"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert calls == [("nvidia/segformer-b0-finetuned-ade-512-512", None)]
    assert out["use"] == "--segmenter hf:nvidia/segformer-b0-finetuned-ade-512-512"
    assert out["labels"] == len(EXPECTED_LABELS) - 1
    assert out["brush_concepts"] == ["building", "door", "grass", "lamp", "road", "sky", "tower", "tree", "window"]
    assert hf.MISSING_EXTRA.startswith("hf: segmenters need")
    assert main(["zoo", "fetch-segmenter"]) == 2


def test_mask2former_semantic_scores_follow_its_post_processing(tmp_path: Path) -> None:
    """Mask-classification models load as universal segmentation; class x mask probabilities give the
    labels transformers' own semantic post-processing gives."""
    from PIL import Image

    torch.manual_seed(2)
    names = ["wall", "building;edifice", "sky", "tree"]
    id2label = dict(enumerate(names))
    swin = transformers.SwinConfig(image_size=32, patch_size=4, embed_dim=32, depths=[1, 1, 1, 1],
                                   num_heads=[1, 1, 1, 1], window_size=2,
                                   out_features=["stage1", "stage2", "stage3", "stage4"])
    config = transformers.Mask2FormerConfig(
        backbone_config=swin, feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=32,
        dim_feedforward=32, num_queries=5, encoder_layers=1, decoder_layers=2, num_attention_heads=2,
        num_labels=len(names), id2label=id2label, label2id={v: k for k, v in id2label.items()})
    model = transformers.Mask2FormerForUniversalSegmentation(config).eval()
    model.save_pretrained(tmp_path)
    transformers.Mask2FormerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    segmenter = load_segmenter(f"hf:{tmp_path}")
    assert segmenter.labels == [("-", ""), ("wall", "object"), ("building", "object"), ("sky", "object"),
                                ("tree", "object")]
    pixels = np.random.default_rng(1).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1
    processor = transformers.AutoImageProcessor.from_pretrained(tmp_path, local_files_only=True)
    inputs = processor(images=[Image.fromarray(p) for p in pixels], return_tensors="pt")
    with torch.no_grad():
        reference = processor.post_process_semantic_segmentation(model(pixel_values=inputs["pixel_values"]),
                                                                 target_sizes=[(32, 32)] * 2)
    ours = segmenter(images)[:, 0]
    assert torch.equal(ours, segmenter.class_to_label[torch.stack(reference)])


def test_without_the_extra_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "transformers", None)  # as if ganpaint[real] were not installed
    with pytest.raises(ValueError, match=r"pip install 'ganpaint\[real\]'"):
        load_segmenter(f"hf:{tmp_path}")
