"""Synthetic data for the post-hoc fit (``model.trust.fit``): classes around their own centres
in the features, strangers between them, block summaries that carry the features."""

from __future__ import annotations

import numpy as np
import torch

from model.ensemble import Ensemble
from model.net import SphericalCNN
from model.trust import FitData, Invariants


def synthetic_fit_data(
    network: SphericalCNN | Ensemble,
    class_names: list[str],
    n_train: int,
    n_val: int,
    n_strangers: int,
) -> FitData:
    """Features of ``len(class_names)`` classes around random centres (noise 0.3); the
    classifier of ``network`` (each member's, of an ensemble) set to know the centres of its
    own features; strangers around the centres' mean; the training bank is the first third of
    the training shapes. Fixed seeds: the same data on every call."""
    generator = torch.Generator().manual_seed(1)
    d = network.config.descriptor_size
    k = len(class_names)
    centres = 3.0 * torch.rand(k, d, generator=generator, dtype=torch.float64)
    members = list(network.members) if isinstance(network, Ensemble) else [network]
    sizes = [m.config.descriptor_size for m in members]
    with torch.no_grad():
        for member, part in zip(members, centres.split(sizes, dim=1), strict=True):
            member.classifier.weight.copy_(part.float())
            member.classifier.bias.copy_(-0.5 * (part**2).sum(1).float())

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.randint(0, k, (n,), generator=generator)
        noise = 0.3 * torch.randn(n, d, generator=generator, dtype=torch.float64)
        return centres[labels] + noise, labels

    train, train_labels = draw(n_train)
    val, val_labels = draw(n_val)
    strangers = centres.mean(0) + 0.3 * torch.randn(n_strangers, d, generator=generator).double()
    blocks = network.summary_names()

    def shapes(features: torch.Tensor) -> Invariants:
        """Block summaries that carry the features (the first 4 numbers) and noise."""
        summaries = [
            torch.cat([features[:, :4], torch.rand(len(features), 4, generator=generator)], 1)
            for _ in blocks
        ]
        return Invariants(features, [s.double() for s in summaries])

    return FitData(
        train=shapes(train),
        bank=shapes(train[: n_train // 3]),
        train_labels=train_labels,
        val=shapes(val),
        val_labels=val_labels,
        val_first=np.ones(n_val, dtype=bool),
        val_meshes=[f"val{i}" for i in range(n_val)],
        ood=shapes(strangers),
        ood_labels=np.arange(n_strangers) % 2,
        class_names=list(class_names),
        choosing=["x"],
        reporting=["y"],
    )
