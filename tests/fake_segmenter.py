"""A deterministic stand-in segmenter for tests: labels are simple functions of the pixels."""

from __future__ import annotations

import torch


class ColourRuleSegmenter:
    """object channel: 1 'warm' where R > G else 2 'cool'; material channel: 3 'bright' where B > 0."""

    labels = [("-", ""), ("warm", "object"), ("cool", "object"), ("bright", "material")]
    categories = ("object", "material")
    identity = "tests.fake_segmenter"

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        obj = torch.where(images[:, 0] > images[:, 1], 1, 2)
        mat = torch.where(images[:, 2] > 0, 3, 0)
        return torch.stack([obj, mat], 1).long()


def make(device: str = "cpu") -> ColourRuleSegmenter:
    return ColourRuleSegmenter()
