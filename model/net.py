"""The spherical CNN of Esteves et al. (ECCV 2018): two branches, spectral convolutions,
spectral pooling, area-weighted global average pooling, a classifier and a descriptor.

Input: spherical maps (B, C, 2b, 2b) whose channels are ``raymap.FEATURE_NAMES``; the first
``branch_channels`` belong to the mesh branch, the rest to the convex-hull branch.
Output: class logits (B, K) and an L2-normalized, rotation-invariant descriptor (B, D).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from model.layers import SpectralConv, SphericalMean

ACTIVATIONS = ("relu", "prelu")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the network; stored in checkpoints and ONNX metadata."""

    n_classes: int = 10
    bandwidth: int = 32
    in_channels: int = 6
    n_branches: int = 2
    # One entry per spectral layer of a branch: (out_channels, out_bandwidth).
    branch_layers: tuple[tuple[int, int], ...] = (
        (16, 32),
        (16, 16),
        (32, 16),
        (32, 8),
        (64, 8),
        (64, 8),
    )
    # Spectral layers after the branches are concatenated (channels, bandwidth).
    joint_layers: tuple[tuple[int, int], ...] = ((128, 8),)
    descriptor_size: int = 128
    n_anchors: int = 8
    dropout: float = 0.3
    # After each spherical block's batch norm: "relu", or "prelu" (the paper's: a learned
    # slope per channel for negative values; pointwise like ReLU, so it commutes with
    # rotations of the grid as well).
    activation: str = "relu"
    # A classifier on each branch's spherical mean, for an auxiliary loss in training
    # (``TrainConfig.branch_loss``); the exported graph never computes it.
    branch_heads: bool = False

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.in_channels % self.n_branches:
            raise ValueError(f"{self.in_channels=} is not divisible by {self.n_branches=}")
        bandwidth = self.bandwidth
        for channels, out_bandwidth in (*self.branch_layers, *self.joint_layers):
            if out_bandwidth > bandwidth or channels < 1:
                raise ValueError(f"layer ({channels}, {out_bandwidth}) after bandwidth {bandwidth}")
            bandwidth = out_bandwidth

    @property
    def branch_channels(self) -> int:
        return self.in_channels // self.n_branches

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, object]) -> ModelConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {sorted(unknown)}")
        fixed = {
            key: tuple(tuple(layer) for layer in value)  # type: ignore[union-attr]
            if key in ("branch_layers", "joint_layers")
            else value
            for key, value in values.items()
        }
        return cls(**fixed)  # type: ignore[arg-type]


class SphericalBlock(nn.Module):
    """Spectral convolution (with spectral pooling) -> batch norm -> ReLU (or PReLU), on the
    grid."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        in_bandwidth: int,
        out_bandwidth: int,
        n_anchors: int,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        self.conv = SpectralConv(in_channels, out_channels, in_bandwidth, out_bandwidth, n_anchors)
        # Per-channel affine at inference: commutes with rotations.
        self.norm = nn.BatchNorm2d(out_channels)
        self.activation: nn.Module = nn.PReLU(out_channels) if activation == "prelu" else nn.ReLU()
        self.mean = SphericalMean(out_bandwidth)  # for summary(); no weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activation(self.norm(self.conv(x)))

    def summary(self, x: torch.Tensor) -> torch.Tensor:
        """This block's output (B, C, 2b, 2b) -> (B, 2C): each channel's spherical mean and root
        mean square, invariant to rotations of the input like the descriptor."""
        return torch.cat([self.mean(x), self.mean(x * x).sqrt()], dim=1)


def _blocks(
    in_channels: int,
    in_bandwidth: int,
    layers: tuple[tuple[int, int], ...],
    n_anchors: int,
    activation: str,
) -> nn.Sequential:
    blocks = []
    channels, bandwidth = in_channels, in_bandwidth
    for out_channels, out_bandwidth in layers:
        blocks.append(
            SphericalBlock(channels, out_channels, bandwidth, out_bandwidth, n_anchors, activation)
        )
        channels, bandwidth = out_channels, out_bandwidth
    return nn.Sequential(*blocks)


class SphericalCNN(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.branches = nn.ModuleList(
            _blocks(c.branch_channels, c.bandwidth, c.branch_layers, c.n_anchors, c.activation)
            for _ in range(c.n_branches)
        )
        branch_out, branch_bandwidth = c.branch_layers[-1]
        self.joint = _blocks(
            branch_out * c.n_branches, branch_bandwidth, c.joint_layers, c.n_anchors, c.activation
        )
        final_channels, final_bandwidth = (c.joint_layers or c.branch_layers)[-1]
        if not c.joint_layers:
            final_channels = branch_out * c.n_branches
        self.pool = SphericalMean(final_bandwidth)
        self.embed = nn.Sequential(
            nn.Linear(final_channels, c.descriptor_size),
            nn.BatchNorm1d(c.descriptor_size),
            nn.ReLU(),
        )
        self.dropout = nn.Dropout(c.dropout)
        self.classifier = nn.Linear(c.descriptor_size, c.n_classes)
        self.branch_heads = nn.ModuleList(
            nn.Linear(branch_out, c.n_classes) for _ in range(c.n_branches if c.branch_heads else 0)
        )

    def features(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, C, 2b, 2b) -> (B, D) rotation-invariant features before normalization."""
        return self._run(maps, None)

    def features_and_summaries(self, maps: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The features and every block's invariant summary (``SphericalBlock.summary``), in
        order: the blocks of each branch, then the joint blocks (``summary_names``)."""
        summaries: list[torch.Tensor] = []
        return self._run(maps, summaries), summaries

    def summary_names(self) -> list[str]:
        names = [f"branch{i}.{j}" for i, b in enumerate(self.branches) for j in range(len(b))]
        return names + [f"joint.{j}" for j in range(len(self.joint))]

    def _run(
        self,
        maps: torch.Tensor,
        summaries: list[torch.Tensor] | None,
        branch_outputs: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        parts = maps.split(self.config.branch_channels, dim=1)
        outs = [
            self._blocks(branch, part, summaries)
            for branch, part in zip(self.branches, parts, strict=True)
        ]
        if branch_outputs is not None:
            branch_outputs.extend(outs)
        x = torch.cat(outs, dim=1)  # (B, branches * C, 2b', 2b')
        x = self._blocks(self.joint, x, summaries)  # (B, C', 2b', 2b')
        return self.embed(self.pool(x))  # (B, D)

    @staticmethod
    def _blocks(
        blocks: nn.Sequential, x: torch.Tensor, summaries: list[torch.Tensor] | None
    ) -> torch.Tensor:
        for block in blocks:
            x = block(x)
            if summaries is not None:
                summaries.append(block.summary(x))
        return x

    def forward(self, maps: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(B, C, 2b, 2b) -> logits (B, K), unit-length descriptor (B, D); in training, a
        network with branch heads also gives each branch's logits (branches, B, K), for the
        auxiliary loss (in the forward pass, so that a DistributedDataParallel wrapper sees
        the heads' use)."""
        branch_outputs: list[torch.Tensor] | None = (
            [] if self.training and len(self.branch_heads) else None
        )
        features = self._run(maps, None, branch_outputs)
        logits = self.classifier(self.dropout(features))
        descriptor = F.normalize(features, dim=1)
        if branch_outputs is None:
            return logits, descriptor
        branch_logits = torch.stack(
            [  # each branch's last block holds the spherical mean at its output grid
                head(branch[-1].mean(out))
                for head, branch, out in zip(
                    self.branch_heads, self.branches, branch_outputs, strict=True
                )
            ]
        )
        return logits, descriptor, branch_logits


# Named architectures: the paper-sized one for 64 x 64 maps and a small one for quick tests.
PRESETS: dict[str, dict[str, object]] = {
    "paper": {},
    "small": {
        "bandwidth": 16,
        "branch_layers": ((16, 16), (16, 8), (32, 8), (32, 4), (64, 4)),
        "joint_layers": ((64, 4),),
        "descriptor_size": 64,
        "n_anchors": 4,
    },
}


def preset_config(name: str, **overrides: object) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown architecture {name!r}; choose one of {sorted(PRESETS)}")
    return ModelConfig(**{**PRESETS[name], **overrides})  # type: ignore[arg-type]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _conv_multiply_adds(conv: SpectralConv) -> int:
    b_in, b_out = conv.in_bandwidth, conv.out_bandwidth
    i, o = conv.in_channels, conv.out_channels
    t_in, t_out, m, l = 2 * b_in, 2 * b_out, 2 * b_out - 1, b_out
    analysis = i * (t_in * t_in * m + m * t_in * l)  # DFT, then one Legendre matrix per order
    mixing = l * m * i * o
    synthesis = o * (m * l * t_out + t_out * m * t_out)
    return analysis + mixing + synthesis


def multiply_adds(model: SphericalCNN) -> int:
    """Multiply-adds per sample (transforms, channel mixing and dense layers)."""
    total = sum(_conv_multiply_adds(m) for m in model.modules() if isinstance(m, SpectralConv))
    total += sum(
        m.in_features * m.out_features for m in model.modules() if isinstance(m, nn.Linear)
    )
    return total


def describe(model: SphericalCNN) -> str:
    return (
        f"SphericalCNN: {parameter_count(model):,} parameters, "
        f"{multiply_adds(model) / 1e6:.1f} M multiply-adds per sample"
    )
