"""The generator reproduces the released checkpoints' architecture and loads them strictly."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoints import CheckpointError, load_generator, read_weights, save_weights
from models.proggan import ProgressiveGenerator, normalize_state_dict, sizes_from_state_dict
from models.samples import CHUNK_ROWS, z_for_ids, z_tensor
from tests.conftest import reference_forward, released_state_dict

SIZES_64 = [48, 40, 40, 24, 16, 8]
SIZES_256 = [16, 16, 16, 12, 8, 8, 4, 4]


@pytest.mark.parametrize("sizes", [SIZES_64, SIZES_256], ids=["64px", "256px"])
@pytest.mark.parametrize("layout", ["new", "old", "wrapped"])
def test_loaded_generator_matches_reference_forward(tmp_path: Path, sizes: list[int], layout: str) -> None:
    state = released_state_dict(sizes, seed=3, old_format=layout == "old")
    saved = {"state_dict": state} if layout == "wrapped" else state
    path = tmp_path / "g.pth"
    torch.save(saved, path)

    generator = load_generator(path)
    resolution = 4 * 2 ** (len(sizes) - 2)
    assert generator.resolution == resolution
    assert generator.sizes == tuple(sizes)
    assert generator.layer_names[-1] == f"output_{resolution}x{resolution}"

    ids = [0, 7, 104]
    z = z_tensor(ids, sizes[0])
    expected = reference_forward(normalize_state_dict(state), z)
    with torch.no_grad():
        got = generator(z)
    assert got.shape == (3, 3, resolution, resolution)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)  # channels-last kernels sum in another order


def test_state_dict_keys_are_the_released_ones() -> None:
    generator = ProgressiveGenerator([512, 512, 512, 512, 256, 128, 64, 32])
    keys = set(generator.state_dict())
    expected = {f"layer{k}.{p}" for k in range(1, 15) for p in ("conv.weight", "wscale.b")}
    expected |= {"output_256x256.conv.weight", "output_256x256.wscale.b"}
    assert keys == expected
    assert generator.layer_shape("layer4") == (512, 8, 8)
    assert generator.layer_shape("layer7") == (256, 32, 32)
    assert generator.state_dict()["layer1.conv.weight"].shape == (512, 512, 4, 4)
    assert sum(p.numel() for p in generator.parameters()) == 18_344_995  # sum of the reference table: 18.34 M


@pytest.mark.parametrize("resolution", [8, 16, 128, 1024])
def test_any_resolution_between_8_and_1024(resolution: int) -> None:
    levels = int(np.log2(resolution)) - 1
    sizes = [8] + [4] * levels
    generator = ProgressiveGenerator(sizes)
    assert generator.resolution == resolution
    if resolution <= 128:
        with torch.no_grad():
            assert generator(torch.randn(1, 8)).shape == (1, 3, resolution, resolution)


def test_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="above the supported 1024"):
        ProgressiveGenerator([8] + [4] * 10)
    with pytest.raises(ValueError, match="at least two resolutions"):
        ProgressiveGenerator([8, 4])


def test_forward_from_and_to_split_the_network(small_sizes: list[int]) -> None:
    generator = ProgressiveGenerator(small_sizes).eval()
    z = torch.randn(2, small_sizes[0])
    with torch.no_grad():
        mid = generator.forward_to("layer4", z)
        assert mid.shape == (2, *generator.layer_shape("layer4"))
        torch.testing.assert_close(generator.forward_from("layer4", mid), generator(z))


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_round_trip(tmp_path: Path, small_sizes: list[int], suffix: str) -> None:
    generator = ProgressiveGenerator(small_sizes)
    for p in generator.parameters():
        torch.nn.init.normal_(p)
    path = save_weights(generator.state_dict(), tmp_path / f"g{suffix}")
    loaded = load_generator(path)
    z = torch.randn(2, small_sizes[0])
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), generator(z))


def test_sizes_read_from_file() -> None:
    state = normalize_state_dict(released_state_dict(SIZES_256, old_format=True))
    assert sizes_from_state_dict(state) == SIZES_256
    assert "output_256x256.conv.weight" in state


class _Exploit:
    def __reduce__(self):
        return (Path("/tmp/ganpaint-pwned").touch, ())


def test_pickled_code_is_never_executed(tmp_path: Path) -> None:
    marker = Path("/tmp/ganpaint-pwned")
    marker.unlink(missing_ok=True)
    path = tmp_path / "evil.pth"
    torch.save({"layer1.conv.weight": _Exploit()}, path, pickle_module=pickle)
    with pytest.raises(CheckpointError, match="evil.pth.*never loaded"):
        load_generator(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"hello, I am a text file\n", "not a weight file"),
        (b"PK\x03\x04 truncated zip", "cannot read as a PyTorch weight file"),
    ],
)
def test_corrupt_or_foreign_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"bad.pth.*{message}"):
        load_generator(path)


def test_truncated_checkpoint(released_checkpoint: Path) -> None:
    data = released_checkpoint.read_bytes()
    released_checkpoint.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="church_lsun.pth: cannot read"):
        load_generator(released_checkpoint)


def test_foreign_state_dict_is_named(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.bias": torch.zeros(10)}, path)
    with pytest.raises(CheckpointError, match="resnet.pth: not a ProGAN generator checkpoint.*conv1.weight"):
        load_generator(path)


def test_wrong_shapes_are_reported(tmp_path: Path, small_sizes: list[int]) -> None:
    state = released_state_dict(small_sizes)
    state["layer3.wscale.b"] = torch.zeros(5)
    path = save_weights(state, tmp_path / "g.safetensors")
    with pytest.raises(CheckpointError, match="g.safetensors: not a ProGAN generator"):
        load_generator(path)


def test_damaged_safetensors(tmp_path: Path, small_sizes: list[int]) -> None:
    path = save_weights(released_state_dict(small_sizes), tmp_path / "g.safetensors")
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="g.safetensors: damaged safetensors"):
        read_weights(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        load_generator(tmp_path / "nope.pth")


class TestSampleIds:
    def test_rows_match_the_original_stream(self) -> None:
        z_dim = 16
        n = 3 * CHUNK_ROWS + 5
        stream = np.random.RandomState(1).standard_normal(n * z_dim).reshape(n, z_dim)
        ids = [n - 1, 0, 104, CHUNK_ROWS, CHUNK_ROWS - 1, 2 * CHUNK_ROWS + 7, 104]
        np.testing.assert_array_equal(z_for_ids(ids, z_dim), stream[ids])

    def test_independent_of_how_many_are_drawn(self) -> None:
        a = np.random.RandomState(1).standard_normal(10 * 512).reshape(10, 512)[4]
        np.testing.assert_array_equal(z_for_ids([4])[0], a)

    def test_other_seed(self) -> None:
        stream = np.random.RandomState(2).standard_normal(6 * 8).reshape(6, 8)
        np.testing.assert_array_equal(z_for_ids([5, 1], 8, seed=2), stream[[5, 1]])

    @pytest.mark.parametrize("bad", [-1, 1_000_000, 2.5, True, "3"])
    def test_bad_ids(self, bad: object) -> None:
        with pytest.raises(ValueError, match="sample id"):
            z_for_ids([bad])  # type: ignore[list-item]
