"""Trace reads and replaces layer outputs and never leaves a hook behind."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dissect_core.nethook import StopForward, Trace, count_hooks, layer_names, module_by_name, run_to
from models.proggan import ProgressiveGenerator


@pytest.fixture
def generator() -> ProgressiveGenerator:
    torch.manual_seed(0)
    return ProgressiveGenerator([16, 16, 16, 8, 8]).eval()


def test_retains_the_layer_output(generator: ProgressiveGenerator) -> None:
    z = torch.randn(2, 16)
    with torch.no_grad(), Trace(generator, ["layer2", "layer4"]) as trace:
        image = generator(z)
        expected = generator.forward_to("layer4", z)
    torch.testing.assert_close(trace["layer4"], expected)
    assert trace["layer2"].shape == (2, 16, 4, 4)
    assert image.shape == (2, 3, 32, 32)
    assert count_hooks(generator) == 0


def test_edit_replaces_the_output_downstream(generator: ProgressiveGenerator) -> None:
    z = torch.randn(2, 16)
    with torch.no_grad():
        mid = generator.forward_to("layer4", z)
        expected = generator.forward_from("layer4", torch.zeros_like(mid))
        with Trace(generator, "layer4", edit=lambda x, name: torch.zeros_like(x)) as trace:
            edited = generator(z)
    torch.testing.assert_close(edited, expected)
    assert torch.count_nonzero(trace["layer4"]) == 0
    assert count_hooks(generator) == 0


def test_hooks_removed_when_the_block_raises(generator: ProgressiveGenerator) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        with Trace(generator, ["layer1", "layer3"]):
            assert count_hooks(generator) == 3  # two layers + the pass marker on the root
            raise RuntimeError("boom")
    assert count_hooks(generator) == 0


def test_hooks_removed_when_the_edit_raises(generator: ProgressiveGenerator) -> None:
    def bad_edit(x: torch.Tensor, name: str) -> torch.Tensor:
        raise ValueError("bad edit")

    with pytest.raises(ValueError, match="bad edit"), Trace(generator, "layer2", edit=bad_edit):
        generator(torch.randn(1, 16))
    assert count_hooks(generator) == 0


def test_stop_skips_the_rest_of_the_network(generator: ProgressiveGenerator) -> None:
    ran: list[str] = []
    handle = generator.layer5.register_forward_hook(lambda *a: ran.append("layer5"))
    try:
        outputs = run_to(generator, "layer3", torch.randn(1, 16))
        assert outputs["layer3"].shape == (1, 16, 8, 8)
        assert ran == []
        # a second pass within one Trace is cut short again
        with Trace(generator, "layer3", stop=True) as trace:
            with pytest.raises(StopForward):
                generator(torch.randn(1, 16))
            generator(torch.randn(1, 16))
        assert ran == [] and "layer3" in trace.outputs
    finally:
        handle.remove()
    assert count_hooks(generator) == 0


def test_detach_false_keeps_gradients(generator: ProgressiveGenerator) -> None:
    z = torch.randn(1, 16, requires_grad=True)
    with Trace(generator, "layer2", detach=False) as trace:
        generator(z)
    trace["layer2"].sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_clone_protects_from_inplace_changes() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(inplace=True))
    with Trace(model, "0", clone=True) as cloned, Trace(model, "0") as shared:
        model(torch.full((1, 3), -1.0))
    assert torch.equal(cloned["0"], model[0](torch.full((1, 3), -1.0)).detach())
    assert (shared["0"] >= 0).all()  # relu changed the shared tensor in place


def test_unknown_layer_names_the_alternatives(generator: ProgressiveGenerator) -> None:
    with pytest.raises(KeyError, match="layer99.*layer1, layer2"):
        Trace(generator, "layer99")
    with pytest.raises(KeyError, match="has not run"):
        with Trace(generator, "layer1") as trace:
            trace["layer1"]
    assert "layer3.conv" in layer_names(generator)
    assert module_by_name(generator, "layer3.conv") is generator.layer3.conv
    assert count_hooks(generator) == 0


def test_folded_copy_matches_the_model_and_leaves_it_alone() -> None:
    from dissect_core.nethook import Trace, folded_copy
    from models.classifier import SceneClassifier

    torch.manual_seed(0)
    model = SceneClassifier(width=8)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    model.eval()
    folded = folded_copy(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad(), Trace(model, ["features.block2"]) as a, Trace(folded, ["features.block2"]) as b:
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-5)
        model(x)
        folded(x)
    torch.testing.assert_close(b["features.block2"], a["features.block2"], rtol=1e-4, atol=1e-5)
