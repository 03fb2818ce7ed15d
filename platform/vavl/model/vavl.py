"""VAVL (Goncalves et al., arXiv 2305.07216): two modality branches, one shared conformer encoder.

Per modality m in {audio, visual}, on the rows where m is present (shapes as in `vavl.model`):

    x (P, T, D_m) -> Linear D_m->d -> branch conformers -> h (P, T, d)
    h -> shared(h) + residual_weight * h -> LayerNorm -> masked mean over T -> repr (P, d)
         (shared: `shared_layers` conformer blocks; the residual goes around all of them, as the
         paper's code adds its shared Conformer's input to that Conformer's output)
    repr -> prediction head -> (P, K);  repr -> reconstruction head -> (P, D_m)

and the fusion head maps concat(repr_audio, repr_visual) (P, 2d) -> (P, K) on the rows with both.
The reconstruction target is the masked mean of that modality's input frames, (B, D_m).
Every output is scattered back to (B, ...) with zeros on rows where it does not exist.

`model.preset: paper` gives the paper's public code's layer counts and widths (3 blocks per
branch, 2 shared, d 512, 8 heads, ff 4x, kernel 31, 512-unit heads): 52.6M parameters here against
that code's 61.4M, of which 53.9M are used (it builds an unused Conv2d subsampler in each of its
three Conformers and an unused MLP_av head). The rest of the gap is where the networks differ:
- its attention is relative-positional (Transformer-XL: pos_proj, u/v biases); ours has no
  positional encoding (`vavl.model.conformer` says why); its depthwise convolution has no bias;
- it projects inputs through a 50-d bottleneck (Conv1d D->50, then Linear 50->512); ours is one
  Linear D->d;
- its shared Conformer starts with its own Linear 512->512, inside the residual; ours does not;
- its heads are Linear(512, 512) -> ReLU -> Linear(512, 256) -> Linear(256, out): the last two
  compose to one linear map, so its prediction and fusion heads compute what ours do with
  head_hidden 512, while its reconstruction heads are limited to rank 256 and ours are not;
- it uses BatchNorm in the convolution module (ours: LayerNorm, which pads cannot reach), pools
  over every frame (ours: a masked mean) and drops out 0.2 in the heads (ours: model.dropout).

A config dim of 0 means the corpus has no such modality: the model then has only the other
branch, its heads and the shared blocks, and no fusion head (`VAVL.modalities`, `VAVL.branches`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from vavl.config import ModelConfig
from vavl.model.conformer import ConformerBlock, zero_pads
from vavl.model.dropout import Dropout

Modality = Literal["audio", "visual"]
Branch = Literal["audio", "visual", "fusion"]
MODALITIES: tuple[Modality, Modality] = ("audio", "visual")


@dataclass
class ModalityOutputs:
    """One tensor per condition, each (B, ...) or None where the condition was not computed."""

    audio: Tensor | None
    visual: Tensor | None
    fusion: Tensor | None = None


@dataclass
class VAVLOutput:
    predictions: ModalityOutputs  # audio/visual/fusion (B, K); fusion only when both inputs given
    reconstructions: ModalityOutputs  # audio (B, D_a), visual (B, D_v); fusion None
    representations: ModalityOutputs  # audio/visual (B, d): pooled, after shared blocks + LayerNorm
    present: ModalityOutputs  # (B,) bool per modality; fusion = both present
    recon_targets: ModalityOutputs  # audio (B, D_a), visual (B, D_v): masked mean of the inputs


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x (B, T, D) over the real frames of mask (B, T) -> (B, D); 0 for all-pad rows."""
    count = mask.sum(dim=1).clamp(min=1).unsqueeze(-1).to(x.dtype)  # (B, 1)
    return zero_pads(x, mask).sum(dim=1) / count


def mlp_head(*, in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    """(N, in_dim) -> (N, out_dim) through one ReLU hidden layer."""
    for name, value in (("in_dim", in_dim), ("hidden", hidden), ("out_dim", out_dim)):
        if value <= 0:
            raise ValueError(f"head {name} must be > 0, got {value}")
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), Dropout(dropout), nn.Linear(hidden, out_dim)
    )


class ModalityEncoder(nn.Module):
    """Projection then branch conformers: x (P, T, D) -> (P, T, d), zero on pads."""

    def __init__(self, *, projection: nn.Linear, blocks: list[ConformerBlock]) -> None:
        super().__init__()
        if not blocks:
            raise ValueError("a modality encoder needs >= 1 conformer block, got 0")
        widths = {block.d_model for block in blocks}
        if widths != {projection.out_features}:
            raise ValueError(
                f"projection width {projection.out_features} does not match the "
                f"conformer widths {sorted(widths)}"
            )
        self.input_dim = projection.in_features
        self.projection = projection
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (P, T, D) float, mask (P, T) bool with >= 1 real frame per row -> (P, T, d)."""
        h = zero_pads(self.projection(x), mask)
        for block in self.blocks:
            h = block(h, mask)
        return h


def _block(config: ModelConfig) -> ConformerBlock:
    return ConformerBlock(
        d_model=config.d_model,
        n_heads=config.n_heads,
        ff_mult=config.ff_mult,
        conv_kernel=config.conv_kernel,
        dropout=config.dropout,
        checkpointed=config.activation_checkpointing,
    )


def _encoder(config: ModelConfig, input_dim: int) -> ModalityEncoder:
    return ModalityEncoder(
        projection=nn.Linear(input_dim, config.d_model),
        blocks=[_block(config) for _ in range(config.branch_layers)],
    )


@dataclass
class _Branch:
    """One modality's outputs, already scattered back to (B, ...)."""

    representation: Tensor  # (B, d)
    prediction: Tensor  # (B, K)
    reconstruction: Tensor  # (B, D)
    present: Tensor  # (B,) bool
    target: Tensor  # (B, D)


def _scatter(rows: Tensor, values: Tensor, batch: int) -> Tensor:
    """values (P, ...) placed at `rows` (P,) of a zero (B, ...) tensor; differentiable."""
    return values.new_zeros((batch, *values.shape[1:])).index_copy(0, rows, values)


def _trim(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Drop trailing frames that are pads in every row; padding invariance makes this exact."""
    length = int(mask.any(dim=0).nonzero()[-1]) + 1
    return x[:, :length], mask[:, :length]


def _check_modality(
    name: Modality, x: Tensor | None, mask: Tensor | None, dim: int
) -> tuple[Tensor, Tensor] | None:
    """Validate one modality's (x (B, T, D), mask (B, T)); None mask -> every frame real."""
    if x is None:
        if mask is not None:
            raise ValueError(f"{name}_mask was given without {name} features")
        return None
    if x.dim() != 3:
        raise ValueError(f"{name} must be (B, T, D) with 3 dims, got shape {tuple(x.shape)}")
    if x.shape[-1] != dim:
        raise ValueError(f"{name} feature dim: expected {dim}, got {x.shape[-1]}")
    if x.shape[1] == 0:
        raise ValueError(f"{name} has 0 frames; mark an absent modality with an all-False mask")
    if mask is None:
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    if mask.dtype != torch.bool:
        raise ValueError(f"{name}_mask must be bool (True on real frames), got {mask.dtype}")
    if mask.shape != x.shape[:2]:
        raise ValueError(
            f"{name}_mask shape {tuple(mask.shape)} does not match {name} (B, T) "
            f"{tuple(x.shape[:2])}"
        )
    return x, mask


class VAVL(nn.Module):
    """Versatile audio-visual model: answers from audio, video or both (see module docstring)."""

    def __init__(
        self,
        config: ModelConfig | None = None,
        *,
        num_outputs: int = 6,
        residual_weight: float = 1.0,
    ) -> None:
        super().__init__()
        config = ModelConfig() if config is None else config
        if not isinstance(config, ModelConfig):
            raise TypeError(f"config must be a ModelConfig or None, got {type(config).__name__}")
        if num_outputs <= 0:
            raise ValueError(f"num_outputs must be > 0, got {num_outputs}")
        self.audio_dim = config.audio_dim  # 0: no audio branch
        self.visual_dim = config.visual_dim  # 0: no visual branch
        self.d_model = config.d_model
        self.num_outputs = num_outputs
        self.residual_weight = float(residual_weight)  # plain attribute: a sweep may set it
        dims = {"audio": config.audio_dim, "visual": config.visual_dim}
        present = [m for m in MODALITIES if dims[m] > 0]
        head = {"hidden": config.head_hidden, "dropout": config.dropout}
        self.encoders = nn.ModuleDict({m: _encoder(config, dims[m]) for m in present})
        # The first shared block keeps its name, so checkpoints of one shared layer still load;
        # deeper shared blocks follow it in `shared_rest` (empty, with no state, at depth 1).
        self.shared_block = _block(config)
        self.shared_rest = nn.ModuleList(_block(config) for _ in range(config.shared_layers - 1))
        self.shared_norm = nn.LayerNorm(config.d_model)
        self.heads = nn.ModuleDict(
            {m: mlp_head(in_dim=config.d_model, out_dim=num_outputs, **head) for m in present}
        )
        self.recon_heads = nn.ModuleDict(
            {m: mlp_head(in_dim=config.d_model, out_dim=dims[m], **head) for m in present}
        )
        self.fusion_head: nn.Sequential | None = (
            mlp_head(in_dim=2 * config.d_model, out_dim=num_outputs, **head)
            if len(present) == 2
            else None
        )

    @property
    def modalities(self) -> tuple[Modality, ...]:
        """The modalities this model has a branch for (both, unless a config dim was 0)."""
        return tuple(m for m in MODALITIES if m in self.encoders)

    @property
    def branches(self) -> tuple[Branch, ...]:
        """What the model trains and answers with: its modality branches, and fusion with both."""
        return (*self.modalities, *(("fusion",) if self.fusion_head is not None else ()))

    def represent(self, name: Modality, x: Tensor, mask: Tensor) -> Tensor:
        """x (P, T, D), mask (P, T) with >= 1 real frame per row -> pooled representation (P, d)."""
        h = self.encoders[name](x, mask)
        shared = self.shared_block(h, mask)
        for block in self.shared_rest:
            shared = block(shared, mask)
        h = shared + self.residual_weight * h
        return masked_mean(self.shared_norm(h), mask)

    def _branch(self, name: Modality, x: Tensor, mask: Tensor) -> _Branch:
        """Run one modality on its present rows only; scatter results back to (B, ...)."""
        batch = x.shape[0]
        present = mask.any(dim=1)  # (B,)
        target = masked_mean(x, mask)
        rows = present.nonzero(as_tuple=True)[0]  # (P,)
        if rows.numel() == 0:
            # Nothing to encode: zeros, and this branch's parameters stay out of the graph.
            rep = x.new_zeros(0, self.d_model)
            pred, recon = x.new_zeros(0, self.num_outputs), x.new_zeros(0, x.shape[-1])
        else:
            rows_x, rows_mask = _trim(x.index_select(0, rows), mask.index_select(0, rows))
            rep = self.represent(name, rows_x, rows_mask)
            pred, recon = self.heads[name](rep), self.recon_heads[name](rep)
        return _Branch(
            representation=_scatter(rows, rep, batch),
            prediction=_scatter(rows, pred, batch),
            reconstruction=_scatter(rows, recon, batch),
            present=present,
            target=target,
        )

    def _fuse(self, audio: _Branch, visual: _Branch, detach: bool) -> tuple[Tensor, Tensor]:
        """Fusion predictions (B, K), zero where a modality is absent, and the both-present flag."""
        both = audio.present & visual.present  # (B,)
        rows = both.nonzero(as_tuple=True)[0]
        if rows.numel() == 0:
            return audio.prediction.new_zeros(both.shape[0], self.num_outputs), both
        reps = [b.representation.index_select(0, rows) for b in (audio, visual)]
        joint = torch.cat(reps, dim=-1)  # (P, 2d)
        if detach:
            joint = joint.detach()
        return _scatter(rows, self.fusion_head(joint), both.shape[0]), both

    def forward(
        self,
        audio: Tensor | None = None,
        audio_mask: Tensor | None = None,
        visual: Tensor | None = None,
        visual_mask: Tensor | None = None,
        *,
        detach_fusion_inputs: bool = False,
    ) -> VAVLOutput:
        """audio (B, T_a, D_a), audio_mask (B, T_a) bool; visual (B, T_v, D_v), visual_mask
        (B, T_v) bool. Masks are True on real frames (None: all real); an all-False row means
        the modality is absent there. `detach_fusion_inputs` stops the fusion loss at the heads.
        A modality the model has no branch for (see `modalities`) must not be given at all.
        """
        self._refuse_absent(audio=(audio, audio_mask), visual=(visual, visual_mask))
        checked = {
            "audio": _check_modality("audio", audio, audio_mask, self.audio_dim),
            "visual": _check_modality("visual", visual, visual_mask, self.visual_dim),
        }
        given = {name: pair for name, pair in checked.items() if pair is not None}
        if not given:
            wanted = "audio, visual or both" if len(self.modalities) == 2 else self.modalities[0]
            raise ValueError(f"VAVL needs {wanted}; got neither")
        sizes = {name: x.shape[0] for name, (x, _) in given.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"batch sizes differ between modalities: {sizes}")
        out = {name: self._branch(name, x, mask) for name, (x, mask) in given.items()}
        a, v = out.get("audio"), out.get("visual")
        fusion: Tensor | None = None
        both: Tensor | None = None
        if a is not None and v is not None:
            fusion, both = self._fuse(a, v, detach_fusion_inputs)

        def collect(field: str) -> ModalityOutputs:
            return ModalityOutputs(
                audio=None if a is None else getattr(a, field),
                visual=None if v is None else getattr(v, field),
            )

        predictions = collect("prediction")
        predictions.fusion = fusion
        present = collect("present")
        present.fusion = both
        return VAVLOutput(
            predictions=predictions,
            reconstructions=collect("reconstruction"),
            representations=collect("representation"),
            present=present,
            recon_targets=collect("target"),
        )

    def _refuse_absent(self, **given: tuple[Tensor | None, Tensor | None]) -> None:
        """ValueError when features or a mask come for a modality this model has no branch for."""
        for name, (x, mask) in given.items():
            if name not in self.modalities and (x is not None or mask is not None):
                raise ValueError(
                    f"this model has no {name} branch (it was built with model.{name}_dim=0, "
                    f"for a corpus without {name}); it takes {' and '.join(self.modalities)} "
                    f"only: pass {name}=None"
                )

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Disjoint groups covering every parameter: `{m}_only` per modality the model has,
        shared, and fusion when it has both modalities (a group it lacks is not a key)."""

        def params(*modules: nn.Module) -> list[nn.Parameter]:
            return [p for module in modules for p in module.parameters()]

        groups = {
            f"{m}_only": params(self.encoders[m], self.heads[m], self.recon_heads[m])
            for m in self.modalities
        }
        groups["shared"] = params(self.shared_block, self.shared_rest, self.shared_norm)
        if self.fusion_head is not None:
            groups["fusion"] = params(self.fusion_head)
        return groups

    def branch_parameters(self, name: Branch) -> list[nn.Parameter]:
        """The parameters a training phase owns; the shared blocks belong to audio AND visual."""
        if name not in ("audio", "visual", "fusion"):
            raise ValueError(f"branch name must be 'audio', 'visual' or 'fusion', got {name!r}")
        if name not in self.branches:
            raise ValueError(f"this model has no {name} branch; it has {', '.join(self.branches)}")
        groups = self.parameter_groups()
        if name == "fusion":
            return groups["fusion"]
        return groups[f"{name}_only"] + groups["shared"]
