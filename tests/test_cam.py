"""CAM family: the defining identities, hooks and modes restored, batch equals per-image."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dissect_core.cam import (
    CAM,
    METHODS,
    GradCAM,
    ScoreCAM,
    find_target_layer,
    make_method,
    normalize_maps,
    overlay,
)
from dissect_core.nethook import count_hooks
from models.classifier import SceneClassifier


class GapNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 6, 3, padding=1), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


@pytest.fixture
def net() -> GapNet:
    torch.manual_seed(0)
    return GapNet()


def test_cam_is_the_fc_weighted_sum_of_feature_maps(net: GapNet) -> None:
    x = torch.randn(3, 3, 16, 16)
    result = CAM(net, "features")(x, [0, 2, 3])
    features = net.features(x).detach()
    expected = torch.einsum("bk,bkhw->bhw", net.fc.weight[[0, 2, 3]].detach(), features)
    torch.testing.assert_close(result.raw, expected)
    # and the class score is the mean of the CAM plus the bias (what makes CAM a decomposition)
    torch.testing.assert_close(result.raw.mean((1, 2)) + net.fc.bias[[0, 2, 3]].detach(),
                               result.logits.gather(1, torch.tensor([[0], [2], [3]]))[:, 0])
    assert result.maps.shape == (3, 16, 16) and 0 <= result.maps.min() and result.maps.max() <= 1


def test_gradcam_equals_cam_up_to_a_positive_scale(net: GapNet) -> None:
    x = torch.randn(2, 3, 16, 16)
    cam = CAM(net, "features")(x, [1, 1]).raw.clamp(min=0)
    grad = GradCAM(net, "features")(x, [1, 1]).raw
    h, w = cam.shape[-2:]
    torch.testing.assert_close(grad * (h * w), cam, rtol=1e-4, atol=1e-6)


def test_hooks_and_modes_are_restored(net: GapNet) -> None:
    net.train()
    relus_before = [type(m) for m in net.modules()]
    for name in METHODS:
        make_method(name, net, "features", batch_size=4)(torch.randn(2, 3, 16, 16))
        assert count_hooks(net) == 0, name
        assert net.training, name
    assert [type(m) for m in net.modules()] == relus_before


@pytest.mark.parametrize("name", sorted(METHODS))
def test_batch_equals_per_image(net: GapNet, name: str) -> None:
    x = torch.randn(3, 3, 16, 16)
    method = make_method(name, net, "features", batch_size=5)
    batched = method(x, [0, 1, 2])
    for i in range(3):
        single = method(x[i:i + 1], [i])
        torch.testing.assert_close(batched.raw[i:i + 1], single.raw, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(batched.maps[i:i + 1], single.maps, rtol=1e-4, atol=1e-4)


def test_scorecam_batching_does_not_change_the_result(net: GapNet) -> None:
    x = torch.randn(2, 3, 16, 16)
    a = ScoreCAM(net, "features", batch_size=1)(x, [0, 1]).raw
    b = ScoreCAM(net, "features", batch_size=64)(x, [0, 1]).raw
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_default_targets_are_the_top_predictions(net: GapNet) -> None:
    x = torch.randn(4, 3, 16, 16)
    result = GradCAM(net, "features")(x)
    assert torch.equal(result.targets, result.logits.argmax(1))
    with pytest.raises(ValueError, match="one target per image"):
        GradCAM(net, "features")(x, [0, 1])


@pytest.mark.parametrize("method", ["saliency", "guidedbackprop", "deconvnet", "gradcam", "cam"])
def test_every_method_needs_one_valid_target_per_image(net: GapNet, method: str) -> None:
    """One target for two images used to return an all-zero map for the second (gradient methods)."""
    x = torch.randn(2, 3, 16, 16)
    explainer = make_method(method, net, "features")
    with pytest.raises(ValueError, match="one target per image"):
        explainer(x, [1])
    with pytest.raises(ValueError, match="class indices"):
        explainer(x, [0, 99])
    result = explainer(x, [0, 1])
    assert result.targets.tolist() == [0, 1] and (result.raw.flatten(1).abs().amax(1) > 0).all()


def test_target_layer_is_found() -> None:
    assert find_target_layer(SceneClassifier(width=4)) == "features.block4"
    assert find_target_layer(GapNet(), (3, 16, 16)) == "features"


def test_normalize_and_overlay() -> None:
    maps = torch.tensor([[[0.0, 2.0], [4.0, 4.0]], [[1.0, 1.0], [1.0, 1.0]]])
    norm = normalize_maps(maps)
    assert norm[0].tolist() == [[0.0, 0.5], [1.0, 1.0]] and norm[1].abs().sum() == 0
    import numpy as np

    heat, blended = overlay(np.zeros((2, 2, 3), np.uint8), norm[0].numpy(), alpha=0.5)
    assert heat[1, 0].tolist() == [128, 0, 0] and heat[0, 0].tolist() == [0, 0, 128]  # jet: red high, blue low
    assert blended[1, 0].tolist() == [64, 0, 0]
    with pytest.raises(ValueError):
        make_method("nope", GapNet())


def test_gradients_flow_through_a_frozen_model(net: GapNet) -> None:
    net.requires_grad_(False)
    x = torch.randn(2, 3, 16, 16)
    assert GradCAM(net, "features")(x, [0, 1]).raw.abs().sum() > 0
