"""The padded batch that the store's reader yields and training and evaluation consume.

Shapes: B utterances, T_a / T_v frames (padded to the batch's longest), D_a / D_v features,
K classes, A attributes. Masks are True on real frames. A row without a modality has an all-False
mask there and its `has_audio` / `has_visual` flag False; tensors are never zero-length in time.
A modality that the store (or the model it is read for) does not have at all has D = 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import torch


@dataclass
class Batch:
    ids: list[str]
    speakers: list[str]
    audio: torch.Tensor  # (B, T_a, D_a) float32, zeros on pads and absent rows
    audio_mask: torch.Tensor  # (B, T_a) bool
    visual: torch.Tensor  # (B, T_v, D_v)
    visual_mask: torch.Tensor  # (B, T_v) bool
    has_audio: torch.Tensor  # (B,) bool
    has_visual: torch.Tensor  # (B,) bool
    label: torch.Tensor | None = None  # (B,) int64 class index (categorical)
    soft_label: torch.Tensor | None = None  # (B, K) float32 consensus distribution
    attributes: torch.Tensor | None = None  # (B, A) float32 attribute scores

    def __len__(self) -> int:
        return len(self.ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        moved = {
            f.name: value.to(device, non_blocking=non_blocking)
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), torch.Tensor)
        }
        return replace(self, **moved)

    def inputs(self, modalities: Sequence[str]) -> dict[str, torch.Tensor]:
        """The model's keyword inputs, `{m}` (B, T, D) and `{m}_mask` (B, T), for each of
        `modalities` (the model's) that this batch has features of (D > 0)."""
        return {
            key: getattr(self, key)
            for m in modalities
            if getattr(self, m).shape[-1] > 0
            for key in (m, f"{m}_mask")
        }

    def select(self, rows: torch.Tensor) -> Batch:
        """The sub-batch of the rows where the boolean `rows` (B,) is True."""
        index = rows.nonzero(as_tuple=True)[0]
        picked = {
            f.name: value.index_select(0, index.to(value.device))
            for f in fields(self)
            if isinstance(value := getattr(self, f.name), torch.Tensor)
        }
        keep = index.tolist()
        return replace(
            self,
            ids=[self.ids[i] for i in keep],
            speakers=[self.speakers[i] for i in keep],
            **picked,
        )
