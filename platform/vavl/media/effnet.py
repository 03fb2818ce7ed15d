"""EfficientNet-B2 as torchvision builds it, written here so that no torchvision is needed.

torchvision's CPU and CUDA wheels are tied to one torch build each (the PyPI wheel of the release
that matches our pinned CPU torch does not load against it), and we need only the architecture:
the parameter names and shapes below are torchvision's (`features.N...`, `classifier.1`), so a
state dict saved from `torchvision.models.efficientnet_b2` (e.g. its ImageNet weights, or a
fine-tuned copy) loads here with `load_state_dict(strict=True)`.

`embed(images)` returns the pooled 1408-d vector before the classifier: the paper's visual frame
feature. Shapes: images (N, 3, S, S) float, ImageNet-normalised; embeddings (N, 1408).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

# B2's scaling of the B0 baseline (Tan & Le, 2019), as torchvision sets it.
B2_WIDTH, B2_DEPTH, B2_DROPOUT = 1.1, 1.2, 0.3
CHANNEL_DIVISOR = 8
SQUEEZE_REDUCTION = 4  # squeeze-excitation width: a block's input channels // 4
STEM_CHANNELS = 32
HEAD_EXPANSION = 4  # the last 1x1 conv widens the final stage's channels 4x
IMAGENET_CLASSES = 1000
BN_EPS = 1e-5


@dataclass(frozen=True)
class Stage:
    expand: int
    kernel: int
    stride: int
    channels_in: int
    channels_out: int
    blocks: int


# The B0 baseline stages; widths and depths are scaled per variant.
B0_STAGES = (
    Stage(1, 3, 1, 32, 16, 1),
    Stage(6, 3, 2, 16, 24, 2),
    Stage(6, 5, 2, 24, 40, 2),
    Stage(6, 3, 2, 40, 80, 3),
    Stage(6, 5, 1, 80, 112, 3),
    Stage(6, 5, 2, 112, 192, 4),
    Stage(6, 3, 1, 192, 320, 1),
)


def scaled_channels(channels: int, width: float) -> int:
    """`channels * width` rounded to a multiple of 8, never more than 10% below it."""
    value = channels * width
    rounded = max(
        CHANNEL_DIVISOR, int(value + CHANNEL_DIVISOR / 2) // CHANNEL_DIVISOR * CHANNEL_DIVISOR
    )
    return rounded + CHANNEL_DIVISOR if rounded < 0.9 * value else rounded


def conv_bn(
    channels_in: int,
    channels_out: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    act: bool = True,
) -> nn.Sequential:
    """Conv (no bias, 'same' padding) -> BatchNorm -> SiLU: torchvision's Conv2dNormActivation."""
    layers: list[nn.Module] = [
        nn.Conv2d(
            channels_in, channels_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False
        ),
        nn.BatchNorm2d(channels_out, eps=BN_EPS),
    ]
    if act:
        layers.append(nn.SiLU(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W)
        scale = self.fc2(nn.functional.silu(self.fc1(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(scale)


class MBConv(nn.Module):
    """Inverted residual: [1x1 expand] -> depthwise kxk -> squeeze-excite -> 1x1 project.
    Stochastic depth is a training-time regulariser: this module only embeds (eval)."""

    def __init__(self, stage: Stage, channels_in: int, stride: int) -> None:
        super().__init__()
        hidden = channels_in * stage.expand
        layers: list[nn.Module] = []
        if hidden != channels_in:
            layers.append(conv_bn(channels_in, hidden, 1))
        layers += [
            conv_bn(hidden, hidden, stage.kernel, stride, groups=hidden),
            SqueezeExcite(hidden, max(1, channels_in // SQUEEZE_REDUCTION)),
            conv_bn(hidden, stage.channels_out, 1, act=False),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and channels_in == stage.channels_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.residual else out


class EfficientNet(nn.Module):
    def __init__(self, width: float, depth: float, dropout: float, classes: int) -> None:
        super().__init__()
        stages = [
            Stage(
                s.expand,
                s.kernel,
                s.stride,
                scaled_channels(s.channels_in, width),
                scaled_channels(s.channels_out, width),
                math.ceil(s.blocks * depth),
            )
            for s in B0_STAGES
        ]
        stem = scaled_channels(STEM_CHANNELS, width)
        layers: list[nn.Module] = [conv_bn(3, stem, 3, stride=2)]
        for stage in stages:
            blocks = [
                MBConv(
                    stage,
                    stage.channels_in if i == 0 else stage.channels_out,
                    stage.stride if i == 0 else 1,
                )
                for i in range(stage.blocks)
            ]
            layers.append(nn.Sequential(*blocks))
        self.dim = HEAD_EXPANSION * stages[-1].channels_out
        layers.append(conv_bn(stages[-1].channels_out, self.dim, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.dim, classes))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) -> (N, dim): the globally averaged last feature map."""
        return self.features(images).mean((2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(images))


def efficientnet_b2(classes: int = IMAGENET_CLASSES) -> EfficientNet:
    return EfficientNet(B2_WIDTH, B2_DEPTH, B2_DROPOUT, classes)
