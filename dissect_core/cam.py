"""Class Activation Mapping and gradient visualisations: one shared pipeline, each method a small piece.

``BaseCAM.__call__`` runs the model with the target layer traced (``nethook.Trace``, hooks always
removed, train/eval mode restored), takes the target class per sample (given, or the top
prediction), gets gradients of the pre-softmax target scores when the method needs them, and asks
the method for a map at feature resolution. Maps are returned raw (on the model's device) and
normalised to [0, 1] and upsampled bilinearly to the input size.

Methods: CAM (the classifier's FC weights; Zhou et al. 2016), Grad-CAM, Grad-CAM++, XGrad-CAM,
LayerCAM, HiResCAM, Score-CAM (channels batched), Ablation-CAM (channels batched), Eigen-CAM;
and input-space maps: gradient saliency, guided backpropagation, deconvnet.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dissect_core.nethook import Trace, relus_replaced

__all__ = [
    "CamResult", "BaseCAM", "CAM", "GradCAM", "GradCAMpp", "XGradCAM", "LayerCAM", "HiResCAM", "ScoreCAM",
    "AblationCAM", "EigenCAM", "Saliency", "GuidedBackprop", "Deconvnet", "METHODS", "make_method",
    "find_target_layer", "normalize_maps", "overlay",
]


@dataclass
class CamResult:
    raw: torch.Tensor  # (B, h, w) at feature (or input) resolution, unnormalised
    maps: torch.Tensor  # (B, H, W) in [0, 1] at input resolution
    logits: torch.Tensor  # (B, classes)
    targets: torch.Tensor  # (B,) class indices explained


def normalize_maps(maps: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Per-map min-max to [0, 1] (constant maps become 0), optionally upsampled bilinearly first."""
    if size is not None and tuple(maps.shape[-2:]) != tuple(size):
        maps = F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0]
    flat = maps.flatten(1).float()
    low, high = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    out = (flat - low) / (high - low).clamp(min=1e-12)
    out[(high - low).squeeze(1) <= 1e-12] = 0
    return out.view_as(maps)


def find_target_layer(model: nn.Module, input_shape: tuple[int, ...] = (3, 64, 64)) -> str:
    """The model's ``target_layer`` attribute, else the outermost module producing the last
    spatial (4-d, side > 1) feature map of a dummy forward pass."""
    declared = getattr(model, "target_layer", None)
    if isinstance(declared, str):
        return declared
    order: list[tuple[str, torch.Tensor]] = []
    names = {module: name for name, module in model.named_modules() if name}
    handles = [m.register_forward_hook(lambda mod, i, o: order.append((names[mod], o))) for m in names]
    try:
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device))
    finally:
        for handle in handles:
            handle.remove()
    spatial = [(n, o) for n, o in order if isinstance(o, torch.Tensor) and o.dim() == 4 and o.shape[-1] > 1]
    if not spatial:
        raise ValueError("no spatial feature map found; give target_layer explicitly")
    last = spatial[-1][1]
    same = [n for n, o in spatial if o is last]
    return min(same, key=lambda n: n.count("."))


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _targets(logits: torch.Tensor, targets: Sequence[int] | torch.Tensor | None, count: int) -> torch.Tensor:
    """The class explained for each image: given (exactly one per image) or the top prediction."""
    if targets is None:
        return logits.argmax(1)
    target = torch.as_tensor(targets, device=logits.device).long()
    if target.shape != (count,):
        raise ValueError(f"need one target per image, got {tuple(target.shape)} for {count} images")
    if ((target < 0) | (target >= logits.shape[1])).any():
        raise ValueError(f"targets must be class indices in [0, {logits.shape[1]})")
    return target


class BaseCAM:
    """Shared pipeline; subclasses implement ``weights`` (B, K) or override ``cam``."""

    name = "base"
    needs_gradients = True
    relu = True

    def __init__(self, model: nn.Module, target_layer: str | None = None, batch_size: int = 64) -> None:
        self.model = model
        self.target_layer = target_layer or find_target_layer(model)
        self.batch_size = batch_size

    def __call__(self, images: torch.Tensor, targets: Sequence[int] | torch.Tensor | None = None) -> CamResult:
        device = next(self.model.parameters()).device
        # the input carries the graph, so frozen models (requires_grad False) still give gradients
        images = images.to(device).detach().requires_grad_(self.needs_gradients)
        with _eval_mode(self.model), torch.enable_grad():
            with Trace(self.model, self.target_layer, detach=False) as trace:
                logits = self.model(images)
            activations = trace[self.target_layer]
            target = _targets(logits, targets, images.shape[0])
            grads = None
            if self.needs_gradients:
                score = logits.gather(1, target[:, None]).sum()
                (grads,) = torch.autograd.grad(score, activations)
            raw = self.cam(activations.detach(), grads, images, target, logits.detach())
        if self.relu:
            raw = raw.clamp(min=0)
        size = (int(images.shape[-2]), int(images.shape[-1]))
        return CamResult(raw.detach(), normalize_maps(raw.detach(), size), logits.detach(), target)

    def cam(self, activations: torch.Tensor, grads: torch.Tensor | None, images: torch.Tensor,
            target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        weights = self.weights(activations, grads, images, target, logits)
        return (weights[:, :, None, None] * activations).sum(1)

    def weights(self, activations: torch.Tensor, grads: torch.Tensor | None, images: torch.Tensor,
                target: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _scores(self, images: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([self.model(chunk).gather(1, t[:, None])[:, 0]
                              for chunk, t in zip(images.split(self.batch_size), target.split(self.batch_size))])


def _final_linear(model: nn.Module) -> nn.Linear:
    fc = getattr(model, "fc", None)
    if isinstance(fc, nn.Linear):
        return fc
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError("CAM needs a model ending in global average pooling and a linear layer")
    return linears[-1]


class CAM(BaseCAM):
    """Zhou et al.: M_c = sum_k w_k^c f_k, with w the final linear layer's weights (no ReLU)."""

    name, needs_gradients, relu = "cam", False, False

    def weights(self, activations, grads, images, target, logits):
        return _final_linear(self.model).weight[target].to(activations.dtype)


class GradCAM(BaseCAM):
    name = "gradcam"

    def weights(self, activations, grads, images, target, logits):
        return grads.mean(dim=(2, 3))


class GradCAMpp(BaseCAM):
    name = "gradcam++"

    def weights(self, activations, grads, images, target, logits):
        g2, g3 = grads.pow(2), grads.pow(3)
        denominator = 2 * g2 + activations.sum(dim=(2, 3), keepdim=True) * g3
        alpha = g2 / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
        return (alpha * grads.clamp(min=0)).sum(dim=(2, 3))


class XGradCAM(BaseCAM):
    name = "xgradcam"

    def weights(self, activations, grads, images, target, logits):
        total = activations.sum(dim=(2, 3), keepdim=True)
        return (grads * activations / (total + 1e-7)).sum(dim=(2, 3))


class LayerCAM(BaseCAM):
    name = "layercam"

    def cam(self, activations, grads, images, target, logits):
        return (grads.clamp(min=0) * activations).sum(1)


class HiResCAM(BaseCAM):
    name = "hirescam"

    def cam(self, activations, grads, images, target, logits):
        return (grads * activations).sum(1)


class ScoreCAM(BaseCAM):
    """Each channel, min-max normalised and upsampled, masks the input; weights = softmax of the
    masked inputs' target scores. ``batch_size`` masked images go through the model at once."""

    name, needs_gradients = "scorecam", False

    def weights(self, activations, grads, images, target, logits):
        b, k = activations.shape[:2]
        upsampled = normalize_maps(activations.flatten(0, 1), tuple(images.shape[-2:])).view(b, k, *images.shape[-2:])
        scores = torch.empty(b, k, device=activations.device)
        for i in range(b):
            masked = images[i:i + 1] * upsampled[i][:, None]  # (K, 3, H, W)
            scores[i] = self._scores(masked, target[i].repeat(k))
        return torch.softmax(scores, dim=1)


class AblationCAM(BaseCAM):
    """Weight of a channel = relative drop of the target score when that channel is zeroed."""

    name, needs_gradients = "ablationcam", False

    def weights(self, activations, grads, images, target, logits):
        b, k = activations.shape[:2]
        base = logits.gather(1, target[:, None])[:, 0]
        drops = torch.empty(b, k, device=activations.device)
        eye = torch.eye(k, device=activations.device)
        for i in range(b):
            for start in range(0, k, self.batch_size):
                channels = eye[start:start + self.batch_size]  # (c, K): 1 where ablated

                def ablate(x: torch.Tensor, _: str, keep: torch.Tensor = 1 - channels) -> torch.Tensor:
                    return x * keep[:, :, None, None]

                with torch.no_grad(), Trace(self.model, self.target_layer, edit=ablate):
                    out = self.model(images[i:i + 1].expand(len(channels), -1, -1, -1))
                drops[i, start:start + len(channels)] = (base[i] - out[:, target[i]]) / (base[i].abs() + 1e-7)
        return drops


class EigenCAM(BaseCAM):
    """Projection of the activations on their first principal component (class agnostic)."""

    name, needs_gradients = "eigencam", False

    def cam(self, activations, grads, images, target, logits):
        b, k, h, w = activations.shape
        flat = activations.permute(0, 2, 3, 1).reshape(b, h * w, k).float()
        flat = flat - flat.mean(1, keepdim=True)
        _, _, vh = torch.linalg.svd(flat, full_matrices=False)
        projection = flat @ vh[:, 0, :, None]  # (B, hw, 1)
        projection = projection.view(b, h, w)
        # sign: make the map agree with the mean activation
        sign = torch.sign((projection * activations.mean(1)).flatten(1).sum(1))
        return projection * torch.where(sign == 0, torch.ones_like(sign), sign)[:, None, None]


class _GuidedReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, mode: str) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.mode = mode
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        positive_grad = grad.clamp(min=0)
        if ctx.mode == "guided":
            return positive_grad * (x > 0).to(grad.dtype), None
        return positive_grad, None  # deconvnet: ignore the forward mask


class _GuidedReLUModule(nn.Module):
    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GuidedReLU.apply(x, self.mode)


class Saliency(BaseCAM):
    """Simonyan et al.: max over colour channels of |d score / d input| (input resolution)."""

    name, relu = "saliency", False
    mode: str | None = None

    def __init__(self, model: nn.Module, target_layer: str | None = None, batch_size: int = 64) -> None:
        self.model, self.target_layer, self.batch_size = model, target_layer or "", batch_size

    def __call__(self, images: torch.Tensor, targets: Sequence[int] | torch.Tensor | None = None) -> CamResult:
        device = next(self.model.parameters()).device
        images = images.to(device).detach().requires_grad_(True)
        mode = self.mode
        replace = relus_replaced(self.model, lambda: _GuidedReLUModule(mode)) if mode else _nullcontext()
        with _eval_mode(self.model), torch.enable_grad(), replace:
            logits = self.model(images)
            target = _targets(logits, targets, images.shape[0])
            (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), images)
        raw = grad.abs().amax(1) if self.mode is None else grad.clamp(min=0).amax(1)
        return CamResult(raw.detach(), normalize_maps(raw.detach()), logits.detach(), target)


@contextmanager
def _nullcontext() -> Iterator[None]:
    yield


class GuidedBackprop(Saliency):
    name, mode = "guidedbackprop", "guided"


class Deconvnet(Saliency):
    name, mode = "deconvnet", "deconv"


METHODS: dict[str, type[BaseCAM]] = {cls.name: cls for cls in (
    CAM, GradCAM, GradCAMpp, XGradCAM, LayerCAM, HiResCAM, ScoreCAM, AblationCAM, EigenCAM,
    Saliency, GuidedBackprop, Deconvnet)}


def make_method(name: str, model: nn.Module, target_layer: str | None = None, batch_size: int = 64) -> BaseCAM:
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; methods are {', '.join(METHODS)}")
    return METHODS[name](model, target_layer, batch_size)


def _jet(values: np.ndarray) -> np.ndarray:
    """Matplotlib-style jet colormap for values in [0, 1] -> uint8 RGB."""
    v = np.clip(values, 0, 1)
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.stack([r, g, b], -1) * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, cam_map: np.ndarray, alpha: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(heatmap RGB, image blended with the heatmap) for an (H, W, 3) uint8 image and an (H, W) map."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be in [0, 1]")
    heat = _jet(cam_map)
    blended = (image.astype(np.float32) * (1 - alpha) + heat.astype(np.float32) * alpha).round().astype(np.uint8)
    return heat, blended
