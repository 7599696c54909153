"""Training recipes on tiny configurations: they learn, resume exactly, and export loadable models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from models.checkpoints import load_generator
from models.proggan import ProgressiveGenerator
from models.train.classifier import ClassifierConfig, train_classifier
from models.train.common import TrainingCancelled
from models.train.gan import GanConfig, GrowingGenerator, phases_for, snapshot_state, train_gan, widen_generator_state
from models.train.segmenter import SegmenterConfig, train_segmenter
from server.cli import main

TINY_GAN = dict(resolution=16, channels=[16, 16, 16, 8], d_channels=[16, 8, 8], kimg_per_phase=0.2,
                final_kimg=0.2, dataset_size=64, snapshots=3, checkpoint_every=1000, log_every=5,
                batch_sizes={"4": 16, "8": 16, "16": 8})


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GANPAINT_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


def test_growing_generator_snapshots_are_plain_generators() -> None:
    torch.manual_seed(0)
    growing = GrowingGenerator([16, 16, 16, 8, 8])
    for p in growing.parameters():
        torch.nn.init.normal_(p, std=0.5)
    z = torch.randn(3, 16)
    for resolution in (4, 8, 16, 32):
        sizes = [16, 16, 16, 8, 8][: int(torch.log2(torch.tensor(resolution)).item())]
        net = ProgressiveGenerator(sizes if resolution > 4 else [16, 16, 16])
        if resolution == 4:
            continue  # a 4x4 generator is not a ProGAN of the released kind (needs 8x8 and up)
        net.load_state_dict(snapshot_state(growing, resolution))
        with torch.no_grad():
            torch.testing.assert_close(net(z), growing(z, resolution))


def test_fade_in_blends_two_resolutions() -> None:
    growing = GrowingGenerator([16, 16, 16, 8])
    z = torch.randn(2, 16)
    with torch.no_grad():
        low = torch.nn.functional.interpolate(growing(z, 8), scale_factor=2, mode="nearest")
        high = growing(z, 16)
        torch.testing.assert_close(growing(z, 16, alpha=0.0), low)
        torch.testing.assert_close(growing(z, 16, alpha=0.25), low + 0.25 * (high - low))


def test_phase_schedule() -> None:
    config = GanConfig(resolution=32, channels=[8, 8, 8, 8, 8], kimg_per_phase=10, final_kimg=5)
    assert phases_for(config) == [(4, 0, 10), (8, 10, 30), (16, 30, 50), (32, 50, 75)]


def test_gan_resume_is_exact(tmp_path: Path) -> None:
    config = GanConfig(**TINY_GAN)
    straight = train_gan(config, tmp_path / "a", resume=False, progress=False)
    with pytest.raises(TrainingCancelled, match="resume"):
        train_gan(config, tmp_path / "b", resume=False, progress=False, max_seconds=0)
    resumed = train_gan(config, tmp_path / "b", resume=True, progress=False)
    a, b = load_generator(straight), load_generator(resumed)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    snaps = sorted((tmp_path / "a" / "snapshots").glob("*.safetensors"))
    assert len(snaps) == 3 and snaps[-1].name.endswith("16px.safetensors") and "img-" in snaps[0].name
    assert load_generator(snaps[0]).resolution in (8, 16)
    log = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    assert {"loss_d", "loss_g", "r1", "kimg", "resolution"} <= set(log[-1])
    assert json.loads((tmp_path / "a" / "config.json").read_text())["channels"] == [16, 16, 16, 8]


def test_resume_refuses_a_changed_config(tmp_path: Path) -> None:
    with pytest.raises(TrainingCancelled):
        train_gan(GanConfig(**TINY_GAN), tmp_path, resume=False, progress=False, max_seconds=0)
    with pytest.raises(ValueError, match="differs from its saved config.*lr"):
        train_gan(GanConfig(**{**TINY_GAN, "lr": 0.01}), tmp_path, resume=True, progress=False)


def test_segmenter_and_classifier_learn(tmp_path: Path) -> None:
    seg_cfg = SegmenterConfig(width=8, dataset_size=64, steps=40, batch_size=8, log_every=10, checkpoint_every=1000)
    cls_cfg = ClassifierConfig(width=8, dataset_size=64, steps=40, batch_size=8, log_every=10, checkpoint_every=1000)
    train_segmenter(seg_cfg, tmp_path / "seg", resume=False, progress=False)
    train_classifier(cls_cfg, tmp_path / "cls", resume=False, progress=False)
    for run in ("seg", "cls"):
        losses = [json.loads(line)["loss"] for line in (tmp_path / run / "log.jsonl").read_text().splitlines()]
        assert losses[-1] < losses[0], f"{run} loss did not fall: {losses}"


def test_the_judge_trains_on_its_own_split_and_exports_beside_the_segmenter(tmp_path: Path) -> None:
    from dissect_core.segmenters import load_segmenter
    from models.judge import JudgeSegmenter
    from models.world import world_seed
    from models.zoo import get_entry, load_model

    config = SegmenterConfig(architecture="judge", split="judge", width=8, resolution=16, dataset_size=32, steps=40,
                             batch_size=8, log_every=10, checkpoint_every=1000)
    train_segmenter(config, tmp_path / "judge", resume=False, progress=False)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "judge" / "log.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]
    zoo = tmp_path / "zoo"
    assert main(["zoo", "export", "segmenter", "--run-dir", str(tmp_path / "judge"), "--name", "t", "--zoo-dir", str(zoo)]) == 0
    entry = get_entry("t/judge", zoo)
    assert entry.card["architecture"]["class"] == "models.judge.JudgeSegmenter" and "judge split" in entry.card["data"]["world"]
    assert not (zoo / "t" / "segmenter.json").exists()  # the U-Net's card is not touched
    judge = load_model("t/judge", zoo_dir=zoo)
    assert isinstance(judge, JudgeSegmenter) and judge.input_size == 16
    assert load_segmenter("t/judge", zoo_dir=zoo)(torch.zeros(1, 3, 64, 64)).shape == (1, 3, 16, 16)
    assert world_seed("judge", 0) not in {world_seed(s, i) for s in ("train", "heldout", "probe") for i in (0, 31)}
    with pytest.raises(ValueError, match="architecture"):
        train_segmenter(SegmenterConfig(architecture="vit", dataset_size=32, steps=1), tmp_path / "bad", resume=False,
                        progress=False)


def test_train_cli_rejects_unknown_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "gan", "--run-dir", str(tmp_path), "--set", "colour=3"]) == 2
    assert "unknown gan config keys ['colour']" in capsys.readouterr().err


def test_a_planned_stop_exits_0_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--max-seconds is a planned, checkpointed stop: exit 0 (an interruption is 130)."""
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(TINY_GAN))
    args = ["train", "gan", "--run-dir", str(tmp_path / "run"), "--config", str(config), "--no-progress"]
    assert main([*args, "--max-seconds", "0"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["status"] == "stopped"
    assert (tmp_path / "run" / "checkpoint.pt").is_file()
    assert main(args) == 0 and (tmp_path / "run" / "generator.safetensors").is_file()


def test_last_phase_length_may_change_on_resume(tmp_path: Path) -> None:
    with pytest.raises(TrainingCancelled):
        train_gan(GanConfig(**TINY_GAN), tmp_path, resume=False, progress=False, max_seconds=0)
    longer = GanConfig(**{**TINY_GAN, "final_kimg": 0.3})
    train_gan(longer, tmp_path, resume=True, progress=False)
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert saved["images_seen"] >= 1000 * phases_for(longer)[-1][2]
    assert json.loads((tmp_path / "config.json").read_text())["final_kimg"] == 0.3


def _random_generator(sizes: list[int], seed: int = 0) -> ProgressiveGenerator:
    torch.manual_seed(seed)
    net = ProgressiveGenerator(sizes)
    for name, p in net.named_parameters():
        torch.nn.init.normal_(p, std=1.0 if name.endswith("conv.weight") else 0.1)
    return net


def test_widening_keeps_the_picture_and_trains_the_new_channels() -> None:
    narrow = _random_generator([16, 16, 16, 8, 4])
    wide_sizes = [16, 16, 16, 12, 8]
    state = widen_generator_state(narrow.state_dict(), wide_sizes, noise=0.01)
    wide = ProgressiveGenerator(wide_sizes)
    wide.load_state_dict(state)
    z = torch.randn(4, 16)
    with torch.no_grad():
        before, after = narrow(z), wide(z)
    assert (before - after).abs().max().item() < 0.02 * before.abs().max().item()
    # the old weights are where they were; the new outputs are random, the readers of new channels zero
    assert torch.equal(state["layer5.conv.weight"][:8, :16], narrow.state_dict()["layer5.conv.weight"])
    assert state["layer5.conv.weight"][8:].abs().sum() > 0
    assert state["layer6.conv.weight"][:8, 8:].abs().sum() == 0
    assert state["output_32x32.conv.weight"][:, 4:].abs().sum() == 0
    # with no noise the widened net draws the same image to float precision
    exact = ProgressiveGenerator(wide_sizes)
    exact.load_state_dict(widen_generator_state(narrow.state_dict(), wide_sizes, noise=0.0))
    with torch.no_grad():
        torch.testing.assert_close(exact(z), before, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="narrower"):
        widen_generator_state(narrow.state_dict(), [16, 16, 8, 8, 4])


def test_refining_trains_only_the_final_resolution_and_keeps_frozen_layers(tmp_path: Path) -> None:
    narrow = _random_generator([16, 16, 16, 8])
    init = tmp_path / "init.safetensors"
    from models.checkpoints import save_weights

    save_weights(narrow.state_dict(), init)
    config = GanConfig(**{**TINY_GAN, "init_from": str(init), "channels": [16, 16, 16, 12], "freeze_layers": 4,
                          "d_warmup_kimg": 0.05, "final_kimg": 0.1, "d_channels": [16, 8, 8], "spectral_weight": 0.3})
    assert phases_for(config) == [(16, 0.0, pytest.approx(0.15))]
    out = train_gan(config, tmp_path / "run", resume=False, progress=False)
    refined = load_generator(out)
    assert refined.sizes == (16, 16, 16, 12)
    old = narrow.state_dict()
    new = refined.state_dict()
    for key in ("layer1.conv.weight", "layer2.wscale.b", "layer3.conv.weight", "layer4.conv.weight"):
        torch.testing.assert_close(new[key], old[key])  # frozen through the edit layer
    assert not torch.allclose(new["layer5.conv.weight"][:8, :16], old["layer5.conv.weight"])
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    warm = [row for row in logged if row["kimg"] <= 0.05]
    assert warm and all(row["loss_g"] == 0.0 for row in warm)  # the generator waited for the discriminator
    trained = [row for row in logged if row["kimg"] > 0.06]
    assert trained and all(row["spectral"] > 0 for row in trained)  # the spectrum term is in the loss
    assert all(row["resolution"] == 16 and row["alpha"] == 1.0 for row in logged)


def test_log_spectrum_sees_a_checkerboard() -> None:
    from models.train.gan import log_spectrum

    torch.manual_seed(0)
    smooth = torch.nn.functional.avg_pool2d(torch.randn(4, 3, 32, 32), 5, 1, 2)
    checker = smooth + 0.2 * (((torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2) * 2 - 1).float()
    a, b = log_spectrum(smooth), log_spectrum(checker)
    assert b[16, 16] - a[16, 16] > 5  # the (1/2, 1/2) component: the checkerboard
    assert (b - a).abs()[:8, :8].max() < 1e-3  # low frequencies untouched
