"""Read or replace the output of named layers during a forward pass.

``Trace`` is a context manager around any ``nn.Module``: it registers forward hooks on the named
sub-modules on entry and removes every one of them on exit, whether the block ended normally or by
an exception. Inside, ``trace[name]`` is the last output of that layer; an ``edit`` callable may
return a replacement output. With ``stop=True`` the forward pass is cut short after the last traced
layer (its outputs are still recorded), which saves the cost of the layers after it.

    with Trace(generator, "layer4") as trace:
        generator(z)
    features = trace["layer4"]

    with Trace(generator, "layer4", edit=lambda x, name: x * keep_mask):
        image = generator(z)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from types import TracebackType
from typing import TypeVar

import torch
from torch import nn

ModuleT = TypeVar("ModuleT", bound=torch.nn.Module)

__all__ = ["Trace", "StopForward", "module_by_name", "layer_names", "count_hooks", "run_to", "private_copy",
           "relus_replaced", "folded_copy"]

EditFn = Callable[[torch.Tensor, str], torch.Tensor]


class StopForward(Exception):
    """Raised inside a hook to end a forward pass early; swallowed by ``Trace.__exit__``."""


def layer_names(model: nn.Module) -> list[str]:
    """Dotted names of all sub-modules, in registration order (the empty root name excluded)."""
    return [name for name, _ in model.named_modules() if name]


def module_by_name(model: nn.Module, name: str) -> nn.Module:
    """The sub-module called ``name``; a ``KeyError`` lists close alternatives when it is missing."""
    modules = dict(model.named_modules())
    if name not in modules or not name:
        top = [n for n in modules if n and "." not in n]
        raise KeyError(f"unknown layer {name!r}; top-level layers are: {', '.join(top)}")
    return modules[name]


def count_hooks(model: nn.Module) -> int:
    """Number of forward / pre-forward / backward hooks on ``model`` and all its sub-modules."""
    total = 0
    for module in model.modules():
        total += len(module._forward_hooks) + len(module._forward_pre_hooks)
        total += len(module._backward_hooks) + len(getattr(module, "_backward_pre_hooks", {}))
    return total


class Trace(AbstractContextManager["Trace"]):
    """Retain (and optionally edit) the outputs of named layers while the context is open.

    Args:
        model: any module.
        layers: one name or several (``model.named_modules()`` names).
        edit: ``f(output, layer_name) -> new_output`` applied before the output is recorded and
            passed on; ``None`` leaves outputs unchanged.
        detach: record outputs detached from the autograd graph (default); ``False`` keeps the graph
            so that gradients can flow to the recorded tensors.
        clone: record a copy, so that later in-place operations cannot change it.
        stop: end the forward pass after the last of ``layers`` has run.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: str | Iterable[str],
        *,
        edit: EditFn | None = None,
        detach: bool = True,
        clone: bool = False,
        stop: bool = False,
    ) -> None:
        self.model = model
        self.layers: list[str] = [layers] if isinstance(layers, str) else list(layers)
        if not self.layers:
            raise ValueError("Trace needs at least one layer name")
        self.modules = {name: module_by_name(model, name) for name in self.layers}
        self.edit = edit
        self.detach = detach
        self.clone = clone
        self.stop = stop
        self.outputs: dict[str, torch.Tensor] = {}
        self._seen: set[str] = set()
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> Trace:
        if self._handles:
            raise RuntimeError("this Trace is already open")
        try:
            self._handles.append(self.model.register_forward_pre_hook(self._new_pass))
            for name, module in self.modules.items():
                self._handles.append(module.register_forward_hook(self._make_hook(name)))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        self._remove()
        return exc_type is not None and issubclass(exc_type, StopForward)

    def _new_pass(self, module: nn.Module, inputs: tuple) -> None:
        self._seen = set()

    def _remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def _make_hook(self, name: str) -> Callable[[nn.Module, tuple, torch.Tensor], torch.Tensor | None]:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor | None:
            if self.edit is not None:
                output = self.edit(output, name)
            recorded = output.detach() if self.detach else output
            self.outputs[name] = recorded.clone() if self.clone else recorded
            self._seen.add(name)
            if self.stop and len(self._seen) == len(self.modules):
                raise StopForward()
            return output if self.edit is not None else None

        return hook

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self.outputs:
            raise KeyError(f"layer {name!r} has not run (traced: {', '.join(self.layers)})")
        return self.outputs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.outputs)


def run_to(model: nn.Module, layers: str | Iterable[str], *args: object, **kwargs: object) -> dict[str, torch.Tensor]:
    """Run ``model(*args)`` only as far as the last of ``layers``; return their outputs."""
    with Trace(model, layers, stop=True) as trace:
        model(*args, **kwargs)
    return dict(trace.outputs)


def private_copy(module: ModuleT) -> ModuleT:
    """A copy of ``module`` whose hooks nobody else sees.

    Forward hooks belong to the module object, so a ``Trace`` on a model that another thread is
    running (the server's executor rendering while a dissection or feature-visualisation job
    hooks the same generator) would stop, edit or record that thread's forward passes too. Long
    background work therefore hooks its own copy (weights are copied: tens of MB for our models).
    """
    import copy

    return copy.deepcopy(module)


@contextmanager
def relus_replaced(model: nn.Module, make: Callable[[], nn.Module]) -> Iterator[None]:
    """Swap every ``nn.ReLU`` of ``model`` for ``make()`` (guided backprop, redirected gradients);
    the originals are always put back."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    try:
        for parent in list(model.modules()):
            for child_name, child in list(parent.named_children()):
                if isinstance(child, nn.ReLU):
                    swapped.append((parent, child_name, child))
                    setattr(parent, child_name, make())
        yield
    finally:
        for parent, child_name, child in swapped:
            setattr(parent, child_name, child)


def folded_copy(model: nn.Module) -> nn.Module:
    """A copy of an eval-mode model with every ``Conv2d`` directly followed by a ``BatchNorm2d`` (in a
    ``Sequential``) folded into one convolution, the norm replaced by ``Identity``: the same outputs to
    float rounding, one pass over the activations fewer per block. Layer names stay valid for
    ``Trace`` at the level of the containers."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    folded = copy.deepcopy(model).eval()
    for parent in folded.modules():
        if not isinstance(parent, nn.Sequential):
            continue
        names = list(parent._modules)
        for first, second in zip(names, names[1:]):
            conv, norm = parent._modules[first], parent._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d) and norm.track_running_stats:
                fused = fuse_conv_bn_eval(conv, norm)
                fused.weight.data = fused.weight.data.contiguous(memory_format=torch.channels_last)
                parent._modules[first] = fused.requires_grad_(False)
                parent._modules[second] = nn.Identity()
    return folded
