"""Networks of one recipe, trained from different seeds, as one network.

``Ensemble`` answers what ``SphericalCNN`` answers, so the post-hoc fit (``model.trust``), the
export and the evaluation take either: the logits are the mean of the members' logits, the
features the members' features side by side (the descriptor of D1 + D2 + ... numbers), and the
block summaries (``features_and_summaries``, ``summary_names``) are the first member's alone.
A summary describes the local geometry at one block, which the members see alike; every
member's would triple the largest constants of the exported graph, the training shapes' summary
banks, and the memory each request reads (the `layers` novelty score compares a shape with
every bank). ``ensemble_state`` orders the members best on validation first.

An ensemble checkpoint is an ordinary checkpoint (``model.checkpoint``) whose ``weights`` are
the ensemble's and whose ``ensemble`` entry lists the members (their ``model_config``, source
and chosen epoch); its other entries (class names, grid, features, training settings) are the
first member's, checked to be every member's (``SAME_SETTINGS``: the same data, the same
validation split).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from model.net import ModelConfig, SphericalCNN

# Settings every member must share: the same maps in, the same classes out, the same
# validation split (the fit measures the ensemble on it, so no member may have trained on it).
SAME_SETTINGS = (
    "dataset",
    "data",
    "bandwidth",
    "train_rotation",
    "train_copies",
    "train_stretch",
    "data_seed",
    "val_fraction",
    "val_seed",
    "limit_per_class",
)


class Ensemble(nn.Module):
    """Members' mean logits, their features side by side, the first member's summaries."""

    def __init__(self, members: Sequence[SphericalCNN]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least 2 networks, got {len(members)}")
        first = members[0].config
        for member in members[1:]:
            c = member.config
            if (c.in_channels, c.bandwidth, c.n_classes) != (
                first.in_channels,
                first.bandwidth,
                first.n_classes,
            ):
                raise ValueError(
                    "the members differ in input or classes: "
                    f"{(c.in_channels, c.bandwidth, c.n_classes)} against "
                    f"{(first.in_channels, first.bandwidth, first.n_classes)}"
                )
        self.members = nn.ModuleList(members)
        self.sizes = [m.config.descriptor_size for m in members]
        # What export and the fit read of a network's config: the input, the classes, the
        # descriptor's length (the members' together).
        self.config = dataclasses.replace(first, descriptor_size=sum(self.sizes))

    def classifier(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D1 + D2 + ...) features -> (N, K) the mean of the members' logits."""
        parts = features.split(self.sizes, dim=1)
        logits = [m.classifier(p) for m, p in zip(self.members, parts, strict=True)]
        return torch.stack(logits).mean(dim=0)

    def features(self, maps: torch.Tensor) -> torch.Tensor:
        return torch.cat([m.features(maps) for m in self.members], dim=1)

    def features_and_summaries(self, maps: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        first, summaries = self.members[0].features_and_summaries(maps)
        rest = [m.features(maps) for m in self.members[1:]]
        return torch.cat([first, *rest], dim=1), summaries

    def summary_names(self) -> list[str]:
        return self.members[0].summary_names()

    def forward(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, 2b, 2b) -> mean logits (B, K), unit-length descriptor (B, D1 + D2 + ...)."""
        features = self.features(maps)
        return self.classifier(features), F.normalize(features, dim=1)


def is_ensemble(state: Mapping[str, Any]) -> bool:
    return "ensemble" in state


def build_ensemble(state: Mapping[str, Any]) -> Ensemble:
    """The ensemble of an ensemble checkpoint dict (weights loaded, eval mode)."""
    members = [
        SphericalCNN(ModelConfig.from_dict(m["model_config"])) for m in state["ensemble"]["members"]
    ]
    ensemble = Ensemble(members)
    ensemble.load_state_dict(state["weights"])
    return ensemble.eval()


# What a member's checkpoint says about its maps and classes: every member's must be the same,
# and the ensemble's checkpoint carries it once.
SHARED_ENTRIES = ("class_names", "grid", "feature_names", "features_version")
MEMBER_PREFIX = "members.{}."  # an ensemble's state dict: member i's weights under this prefix


def member_weights(state: Mapping[str, Any], index: int = 0) -> dict[str, Any]:
    """The weights of member ``index`` of an ensemble checkpoint dict (0: the best on
    validation), as that member's own checkpoint holds them."""
    prefix = MEMBER_PREFIX.format(index)
    return {k[len(prefix) :]: v for k, v in state["weights"].items() if k.startswith(prefix)}


def ensemble_state(states: Sequence[Mapping[str, Any]], sources: Sequence[Path]) -> dict[str, Any]:
    """Checkpoints of one recipe (``selection`` of each: its chosen epoch) -> one ensemble
    checkpoint dict, the member best on validation first (accuracy, then loss)."""
    if len(states) != len(sources):
        raise ValueError(f"{len(states)} checkpoints for {len(sources)} sources")
    for state, source in zip(states, sources, strict=True):
        if is_ensemble(state):
            raise ValueError(f"{source} is an ensemble already; give its members")
    first = states[0]["train_config"]
    for state, source in zip(states[1:], sources[1:], strict=True):
        config = state["train_config"]
        differing = [
            f"{k}: {config.get(k)!r} vs {first.get(k)!r}"
            for k in SAME_SETTINGS
            if config.get(k) != first.get(k)
        ]
        if differing:
            raise ValueError(
                f"{source} was trained on other data than {sources[0]} ({', '.join(differing)})"
            )
        for key in SHARED_ENTRIES:
            if state[key] != states[0][key]:
                raise ValueError(f"{source} differs from {sources[0]} in {key}")

    def validation(i: int) -> tuple[float, float]:
        selection = states[i]["selection"]
        return (-selection["val_acc"], selection["val_loss"])

    order = sorted(range(len(states)), key=validation)
    best = states[order[0]]
    return {
        "weights": {
            MEMBER_PREFIX.format(j) + k: v.detach().cpu().clone()
            for j, i in enumerate(order)
            for k, v in states[i]["weights"].items()
        },
        "model_config": best["model_config"],
        **{key: best[key] for key in SHARED_ENTRIES},
        "train_config": best["train_config"],
        "recipe": best.get("recipe"),
        "ensemble": {
            "members": [
                {
                    "source": str(sources[i]),
                    "seed": states[i]["train_config"].get("seed"),
                    "selection": states[i]["selection"],
                    "model_config": states[i]["model_config"],
                }
                for i in order
            ],
        },
    }
