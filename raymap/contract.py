"""What a model takes and gives: written into the ONNX metadata by export, read back by the
runtime and the gallery builder, re-derived by nobody.

A :class:`ModelContract` holds the classes, the grid (name and bandwidth), the input
features and their version, the input's name and shape, the outputs' names and sizes and the
descriptor size. :meth:`ModelContract.to_metadata` writes it as ``metadata_props`` (each
value JSON); :meth:`ModelContract.from_metadata` reads and checks it (:class:`ContractError`
names what is missing or wrong); :meth:`ModelContract.check_inputs` refuses a model made for
other maps than this :mod:`raymap` computes.

To add a fact (a novelty threshold, say): a field with a default here; export passes it,
the runtime reads ``info.<field>``. An optional field is written when set and read when
present, so models exported before it still load. To add an output: name it in
``extra_outputs`` (written with the two core outputs under ``outputs``).

No torch and no numpy: the service, export and the tests all import it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from raymap.features import FEATURE_NAMES, FEATURES_VERSION
from raymap.grid import GRID_NAME

INPUT_NAME = "maps"
PROBABILITIES = "probabilities"
DESCRIPTOR = "descriptor"
CORE_OUTPUTS = (PROBABILITIES, DESCRIPTOR)
# (N, 1): how unlike the model's classes a shape is (``model.trust``); an extra output.
NOVELTY = "novelty"
INPUT_DTYPE = "float32"


class ContractError(ValueError):
    """A model's metadata that does not make a valid contract; the message says why."""


@dataclass(frozen=True)
class ModelContract:
    """The facts a model is served by. ``key`` in a field's metadata: its metadata key."""

    name: str = field(metadata={"key": "model_name"})
    version: str = field(metadata={"key": "model_version"})
    class_names: tuple[str, ...]
    bandwidth: int
    feature_names: tuple[str, ...]
    features_version: str
    descriptor_size: int
    grid: str = GRID_NAME
    input_name: str = field(default=INPUT_NAME, metadata={"key": "input"})
    # Outputs besides probabilities (N, K) and descriptor (N, D): (name, size of the last axis)
    extra_outputs: tuple[tuple[str, int], ...] = field(default=(), metadata={"key": "outputs"})
    # A shape whose ``novelty`` output exceeds it is not ``known`` (not one of the classes);
    # fitted by ``model.trust`` so that 95 % of in-class validation shapes stay known.
    novelty_threshold: float | None = None
    # Set by an export proven to compute an older model's descriptors (``export.onnx
    # --descriptor-space-of``): that model's ``space``. None: this model's own.
    descriptor_space: str | None = None

    def __post_init__(self) -> None:
        if self.bandwidth < 1 or self.descriptor_size < 1 or not self.class_names:
            raise ContractError(
                f"bandwidth and descriptor size must be >= 1 and there must be classes; got "
                f"{self.bandwidth}, {self.descriptor_size}, {list(self.class_names)}"
            )
        if len(set(self.class_names)) != len(self.class_names):
            raise ContractError(f"class names are not unique: {list(self.class_names)}")

    # -- derived, never stored apart

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, 2b, 2b) of one spherical map; the input is (N, C, 2b, 2b) float32."""
        return (len(self.feature_names), 2 * self.bandwidth, 2 * self.bandwidth)

    @property
    def outputs(self) -> dict[str, int]:
        """Every output's name and the size of its last axis (each is (N, size)), in order."""
        core = {PROBABILITIES: len(self.class_names), DESCRIPTOR: self.descriptor_size}
        return {**core, **dict(self.extra_outputs)}

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(self.outputs)

    @property
    def space(self) -> str:
        """The space of the descriptors: two models' descriptors can be compared (share a
        gallery) only when their spaces are equal. A model's own name and version unless its
        export proved it computes an older model's descriptors."""
        return self.descriptor_space or own_space(self.name, self.version)

    # -- ONNX metadata

    def to_metadata(self) -> dict[str, str]:
        """The contract as ``metadata_props``: key -> JSON text. Optional fields left at
        their default (None) are not written."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            values[_key(f)] = value
        values["grid"] = {"bandwidth": self.bandwidth, "name": self.grid}  # raymap.grid.GridSpec
        values["input"] = {
            "name": self.input_name,
            "shape": ["N", *self.input_shape],
            "dtype": INPUT_DTYPE,
        }
        values["outputs"] = {name: ["N", size] for name, size in self.outputs.items()}
        for key in ("class_names", "feature_names"):
            values[key] = list(values[key])
        return {key: json.dumps(value) for key, value in values.items()}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> ModelContract:
        """Read and check the contract from ``metadata_props``; :class:`ContractError` names
        the missing keys or the wrong values."""
        missing = [k for k in REQUIRED_KEYS if k not in metadata]
        if missing:
            raise ContractError(f"the model's metadata lacks {missing}; re-export it")
        try:
            values = {
                _key(f): json.loads(metadata[_key(f)])
                for f in dataclasses.fields(cls)
                if _key(f) in metadata
            }
        except json.JSONDecodeError as exc:
            raise ContractError(f"the model's metadata is not JSON: {exc}") from None
        grid = values.pop("grid", GRID_NAME)
        grid_name = grid.get("name") if isinstance(grid, dict) else grid
        grid_bandwidth = grid.get("bandwidth") if isinstance(grid, dict) else values["bandwidth"]
        if grid_bandwidth != values["bandwidth"]:
            raise ContractError(
                f"the model's grid {grid!r} disagrees with its bandwidth {values['bandwidth']}"
            )
        io = values.pop("input", {"name": INPUT_NAME})
        outputs = values.pop("outputs", {})
        try:
            return cls(
                name=str(values["model_name"]),
                version=str(values["model_version"]),
                class_names=tuple(str(c) for c in values["class_names"]),
                bandwidth=int(values["bandwidth"]),
                feature_names=tuple(str(f) for f in values["feature_names"]),
                features_version=str(values["features_version"]),
                descriptor_size=int(values["descriptor_size"]),
                grid=str(grid_name),
                input_name=str(io["name"] if isinstance(io, dict) else io),
                extra_outputs=tuple(
                    (str(name), int(shape[-1]))
                    for name, shape in dict(outputs).items()
                    if name not in CORE_OUTPUTS
                ),
                **{k: v for k, v in values.items() if k in _OPTIONAL},
            )
        except (TypeError, ValueError, KeyError) as exc:
            if isinstance(exc, ContractError):
                raise
            raise ContractError(f"the model's metadata has a malformed value: {exc}") from None

    def check_inputs(self) -> None:
        """:class:`ContractError` unless this raymap computes the maps the model expects
        (grid, features and their version)."""
        if self.grid != GRID_NAME:
            raise ContractError(
                f"the model expects grid {self.grid!r} at bandwidth {self.bandwidth}; "
                f"raymap samples {GRID_NAME!r}"
            )
        if self.features_version != FEATURES_VERSION:
            raise ContractError(
                f"the model was trained on input features version {self.features_version!r}, "
                f"this raymap computes version {FEATURES_VERSION!r}"
            )
        if self.feature_names != FEATURE_NAMES:
            raise ContractError(
                f"the model expects features {list(self.feature_names)}, "
                f"raymap computes {list(FEATURE_NAMES)}"
            )

    def check_signature(
        self, inputs: Mapping[str, list[Any]], outputs: Mapping[str, list[Any]]
    ) -> None:
        """:class:`ContractError` unless a graph's inputs and outputs (name -> shape, the
        batch axis symbolic) are the contract's."""
        if list(inputs) != [self.input_name]:
            raise ContractError(f"the graph takes {list(inputs)}, the metadata {self.input_name!r}")
        shape = list(inputs[self.input_name])
        if shape[1:] != list(self.input_shape):
            raise ContractError(
                f"the graph's input {shape} disagrees with the metadata {self.input_shape}"
            )
        for name, size in self.outputs.items():
            if name not in outputs or outputs[name][-1] != size:
                raise ContractError(
                    f"output {name!r} of size {size} expected from the metadata; "
                    f"the graph has {dict(outputs)}"
                )


def own_space(name: str, version: str) -> str:
    """The descriptor space of a model that declares none: its own name and version."""
    return f"{name} {version}"


def _key(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata.get("key", f.name))


_FIELDS = dataclasses.fields(ModelContract)
# Keys every model must carry: the fields without a default, and the grid.
REQUIRED_KEYS: tuple[str, ...] = (
    *(_key(f) for f in _FIELDS if f.default is dataclasses.MISSING),
    "grid",
)
_STRUCTURED = {"grid", "input_name", "extra_outputs"}
# Fields read as they are (added later with a default, e.g. a threshold).
_OPTIONAL = {
    f.name for f in _FIELDS if f.default is not dataclasses.MISSING and f.name not in _STRUCTURED
}
