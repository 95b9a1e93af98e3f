"""The validation split: stratified, by mesh, fixed by its seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.data import MapSet, split_validation, validation_mask


def _names(copies: int) -> tuple[list[str], torch.Tensor]:
    names, labels = [], []
    for label, (kind, count) in enumerate([("chair", 40), ("desk", 20), ("sofa", 3)]):
        for i in range(count):
            names += [f"{kind}_{i:04d}"] * copies
            labels += [label] * copies
    return names, torch.tensor(labels)


def test_split_is_stratified_by_mesh_and_fixed_by_its_seed() -> None:
    names, labels = _names(copies=3)
    mask = validation_mask(names, labels, 0.1, seed=0)
    held = {n for n, m in zip(names, mask, strict=True) if m}
    assert {n.split("_")[0] for n in held} == {"chair", "desk", "sofa"}
    assert sorted(sum(n.startswith(k) for n in held) for k in ("chair", "desk", "sofa")) == [
        1,
        2,
        4,
    ]
    # Every copy of a held-out mesh is held out: no mesh is on both sides.
    assert not held & {n for n, m in zip(names, mask, strict=True) if not m}
    np.testing.assert_array_equal(mask, validation_mask(names, labels, 0.1, seed=0))
    assert (mask != validation_mask(names, labels, 0.1, seed=1)).any()
    # The draw depends on the meshes, not on how many copies were cast of each.
    names1, labels1 = _names(copies=1)
    once = {n for n, m in zip(names1, validation_mask(names1, labels1, 0.1, 0), strict=True) if m}
    assert once == held


def test_split_validation_returns_disjoint_sets() -> None:
    names, labels = _names(copies=2)
    data = MapSet(torch.arange(len(names)).float(), labels, names, ["chair", "desk", "sofa"])
    train, val = split_validation(data, 0.1, seed=0)
    assert len(train) + len(val) == len(data)
    assert not set(train.names) & set(val.names)
    assert validation_mask(names, labels, 0.0, 0).sum() == 0
    with pytest.raises(ValueError):
        validation_mask(names, labels, 1.0, 0)
