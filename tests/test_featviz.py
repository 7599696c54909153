"""Feature visualisation: raises the target activation, deterministic per seed, composable objectives."""

from __future__ import annotations

import pytest
import torch

from dissect_core.featviz import FFTImage, GeneratorPrior, PixelImage, Transforms, channel, diversity, neuron, render
from dissect_core.nethook import count_hooks
from models.classifier import SceneClassifier
from models.proggan import ProgressiveGenerator


@pytest.fixture(scope="module")
def classifier() -> SceneClassifier:
    torch.manual_seed(0)
    return SceneClassifier(width=8).eval()


@pytest.mark.parametrize("param_cls", [FFTImage, PixelImage])
def test_channel_activation_rises(classifier: SceneClassifier, param_cls: type) -> None:
    layer = "features.block3"
    result = render(classifier, channel(layer, 5), param_cls(1, 64, generator=torch.Generator().manual_seed(1)),
                    steps=48, lr=0.05, seed=3)
    assert result.final_value > 3 * max(result.start_value, 1e-3)
    assert result.images.shape == (1, 3, 64, 64) and result.images.abs().max() <= 1
    assert count_hooks(classifier) == 0 and not classifier.training


def test_same_seed_same_image(classifier: SceneClassifier) -> None:
    def run(seed: int) -> torch.Tensor:
        param = FFTImage(2, 64, generator=torch.Generator().manual_seed(seed))
        objective = channel("features.block2", 1, batch=0) + channel("features.block2", 2, batch=1)
        return render(classifier, objective, param, steps=10, seed=seed).images

    assert torch.equal(run(7), run(7))
    assert not torch.equal(run(7), run(8))


def test_objectives_compose(classifier: SceneClassifier) -> None:
    acts = {"a": torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)}
    assert channel("a", 1)(acts).item() == pytest.approx(acts["a"][:, 1].mean().item())
    assert neuron("a", 2, 0, 1, batch=1)(acts).item() == acts["a"][1, 2, 1, 0].item()
    combined = channel("a", 0) - 0.5 * channel("a", 1)
    assert combined(acts).item() == pytest.approx(acts["a"][:, 0].mean().item() - 0.5 * acts["a"][:, 1].mean().item())
    assert diversity("a")(acts).item() < 0  # similar Gram matrices -> negative diversity reward


def test_generator_prior_optimises_z(classifier: SceneClassifier) -> None:
    torch.manual_seed(0)
    generator = ProgressiveGenerator([16, 16, 16, 8, 8, 8]).eval()
    param = GeneratorPrior(generator, 1, 64, torch.Generator().manual_seed(0))
    z_before = param.z.detach().clone()
    result = render(classifier, channel("features.block4", 3), param, steps=20, lr=0.1, transforms=Transforms(), seed=0)
    assert not torch.equal(param.z.detach(), z_before)
    assert result.final_value > result.start_value
    assert all(not p.requires_grad for p in generator.parameters())


def test_cancel(classifier: SceneClassifier) -> None:
    calls = []
    with pytest.raises(InterruptedError):
        render(classifier, channel("features.block2", 0), PixelImage(1, 64), steps=100,
               cancelled=lambda: calls.append(1) or len(calls) > 3)
    assert count_hooks(classifier) == 0


@pytest.mark.skipif("world64/classifier" not in __import__("models.zoo", fromlist=["list_zoo"]).list_zoo(),
                    reason="needs the world64 zoo classifier")
def test_units_silent_on_the_start_image_are_still_visualised() -> None:
    """Unit 0 of the zoo classifier's last block is off everywhere on the FFT start image: with plain
    ReLU gradients its picture stays the flat start (the README example came out uniform grey);
    redirected gradients (lucid) let it be optimised."""
    from models.zoo import load_model

    model = load_model("world64/classifier")
    changes, stds, finals = {}, {}, {}
    for redirect in (False, True):
        param = FFTImage(1, 64, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            start = param().clone()
        result = render(model, channel("features.block4", 0), param, steps=32, seed=0, redirect_relu=redirect)
        assert result.start_value == 0.0
        changes[redirect] = float((result.images - start).abs().max() * 255)
        stds[redirect] = float((result.images * 255).std())
        finals[redirect] = result.final_value
    # plain gradients: nothing moves, the near-uniform start is the picture
    assert changes[False] == 0.0 and finals[False] == 0.0 and stds[False] < 2.0
    assert changes[True] > 20.0 and stds[True] > 5.0 and finals[True] > 0.0
    assert count_hooks(model) == 0 and all(type(m).__name__ != "RedirectedReLU" for m in model.modules())


def test_redirected_relu_gradient_matches_lucids_rule() -> None:
    """Against a direct transcription of the rule: per image, the ReLU gradient, or where that is
    zero everywhere, the incoming gradient except where it would push a negative input lower."""
    from dissect_core.featviz import RedirectedReLU

    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 5)
    x[1] = -x[1].abs() - 0.1  # image 1: the unit is off everywhere
    grad = torch.randn(4, 3, 5, 5)
    grad[2] = grad[2] * (x[2] < 0)  # image 2: the gradient only reaches negative inputs
    leaf = x.clone().requires_grad_(True)
    out = RedirectedReLU()(leaf)
    out.backward(grad)
    relu = torch.where(x < 0, torch.zeros_like(grad), grad)
    redirected = torch.where((x < 0) & (grad > 0), torch.zeros_like(grad), grad)
    silent = relu.flatten(1).norm(dim=1) == 0
    expected = torch.where(silent.view(-1, 1, 1, 1), redirected, relu)
    assert silent.tolist() == [False, True, True, False]
    assert torch.equal(leaf.grad, expected) and torch.equal(out, x.clamp(min=0))
