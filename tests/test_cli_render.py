"""``ganpaint render``: correct PNGs and activations, clear errors with exit status 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.checkpoints import save_weights
from server.cli import main
from tests.conftest import reference_forward, released_state_dict


def _expected_pixels(state: dict[str, torch.Tensor], ids: list[int], z_dim: int) -> np.ndarray:
    stream = np.random.RandomState(1).standard_normal((max(ids) + 1) * z_dim).reshape(-1, z_dim)
    from models.proggan import normalize_state_dict

    out = reference_forward(normalize_state_dict(state), torch.from_numpy(stream[ids]).float())
    return torch.round(torch.clamp((out + 1) / 2 * 255, 0, 255)).to(torch.uint8).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("fmt", ["new.pth", "old.pth", "new.safetensors"])
def test_render_writes_reference_pngs(tmp_path: Path, small_sizes: list[int], fmt: str, capsys) -> None:
    layout, suffix = fmt.split(".")
    state = released_state_dict(small_sizes, seed=5, old_format=layout == "old")
    path = tmp_path / f"model.{suffix}"
    if suffix == "pth":
        torch.save(state, path)
    else:
        save_weights(state, path)
    ids = [3, 0, 12]
    out = tmp_path / "out"
    assert main(["render", "--model", str(path), "--sample", "3", "--sample", "0", "--sample", "12",
                 "--out", str(out), "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == ids
    expected = _expected_pixels(state, ids, small_sizes[0])
    for i, sample_id in enumerate(ids):
        png = np.asarray(Image.open(out / f"model_{sample_id}.png"))
        assert png.shape == (64, 64, 3)
        # equal up to a rounding step where float summation order differs
        assert np.abs(png.astype(int) - expected[i].astype(int)).max() <= 1
        assert (png == expected[i]).mean() > 0.99


def test_dump_saves_layer_activations(tmp_path: Path, released_checkpoint: Path, small_sizes: list[int]) -> None:
    out = tmp_path / "one.png"
    assert main(["render", "--model", str(released_checkpoint), "--sample", "7", "--out", str(out),
                 "--layer", "layer4", "--dump"]) == 0
    acts = np.load(tmp_path / "one_layer4.npy")
    from models.checkpoints import load_generator
    from models.samples import z_tensor

    generator = load_generator(released_checkpoint)
    with torch.no_grad():
        expected = generator.forward_to("layer4", z_tensor([7], small_sizes[0]))[0].numpy()
    assert acts.shape == (small_sizes[2], 8, 8)
    np.testing.assert_allclose(acts, expected, rtol=1e-5, atol=1e-6)


def _run(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "{tmp}/missing.pth", "--sample", "1"], "missing.pth: no such file"),
        (["--model", "{ckpt}", "--sample", "-4"], "ids run from 0"),
        (["--model", "{ckpt}", "--sample", "1", "--layer", "layer99"], "unknown layer"),
        (["--model", "{text}", "--sample", "1"], "not a weight file"),
        (["--model", "no-such-zoo-model", "--sample", "1"], "no zoo model 'no-such-zoo-model'"),
        (["--model", "{ckpt}", "--sample", "1", "--dump"], "--dump needs --layer"),
        (["--model", "{ckpt}", "--sample", "x"], "invalid int value"),
        (["--model", "{ckpt}", "--sample", "1", "--device", "tpu"], "expected auto, cpu, cuda"),
    ],
)
def test_bad_input_exits_2_without_traceback(tmp_path: Path, released_checkpoint: Path, args: list[str], message: str) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a model")
    args = [a.format(tmp=tmp_path, ckpt=released_checkpoint, text=text) for a in args]
    result = _run(["render", *args, "--out", str(tmp_path / "out")])
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_help_lists_every_command() -> None:
    result = _run(["--help"])
    assert result.returncode == 0
    from server.commands import COMMANDS

    for command in COMMANDS:
        assert command.name in result.stdout
