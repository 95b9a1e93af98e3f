"""The model contract: written to and read from ONNX metadata by one module, round trip exact,
refusals that name the problem, room for facts added later."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import pytest

from raymap.contract import REQUIRED_KEYS, ContractError, ModelContract
from raymap.features import FEATURE_NAMES, FEATURES_VERSION
from tests.service_testing import REPO, SHIPPED_MODEL

CONTRACT = ModelContract(
    name="m",
    version="2",
    class_names=("chair", "desk", "sofa"),
    bandwidth=16,
    feature_names=FEATURE_NAMES,
    features_version=FEATURES_VERSION,
    descriptor_size=64,
)


def test_round_trip_through_metadata() -> None:
    metadata = CONTRACT.to_metadata()
    assert set(REQUIRED_KEYS) <= set(metadata)
    assert all(isinstance(json.loads(v), object) for v in metadata.values())  # all JSON
    assert ModelContract.from_metadata(metadata) == CONTRACT
    assert json.loads(metadata["input"]) == {
        "name": "maps",
        "shape": ["N", len(FEATURE_NAMES), 32, 32],
        "dtype": "float32",
    }
    assert json.loads(metadata["outputs"]) == {
        "probabilities": ["N", 3],
        "descriptor": ["N", 64],
    }
    assert CONTRACT.input_shape == (len(FEATURE_NAMES), 32, 32)


def test_the_descriptor_space_is_the_models_own_unless_declared() -> None:
    assert CONTRACT.space == "m 2" and "descriptor_space" not in CONTRACT.to_metadata()
    same = dataclasses.replace(CONTRACT, version="3", descriptor_space="m 2")
    assert ModelContract.from_metadata(same.to_metadata()).space == "m 2"


def test_extra_outputs_are_written_and_read_in_one_place() -> None:
    extended = dataclasses.replace(CONTRACT, extra_outputs=(("novelty", 1),))
    assert extended.output_names == ("probabilities", "descriptor", "novelty")
    assert ModelContract.from_metadata(extended.to_metadata()) == extended


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_a_missing_key_is_named(key: str) -> None:
    metadata = CONTRACT.to_metadata()
    del metadata[key]
    with pytest.raises(ContractError, match=f"lacks \\['{key}'\\]"):
        ModelContract.from_metadata(metadata)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("descriptor_size", '"x"', "malformed"),
        ("grid", '{"name": "driscoll-healy-soft", "bandwidth": 8}', "disagrees"),
        ("class_names", '["a", "a"]', "not unique"),
        ("descriptor_size", "0", ">= 1"),
        ("model_name", "{not json", "not JSON"),
    ],
)
def test_bad_values_are_refused(key: str, value: str, message: str) -> None:
    metadata = {**CONTRACT.to_metadata(), key: value}
    with pytest.raises(ContractError, match=message):
        ModelContract.from_metadata(metadata)


def test_inputs_of_another_raymap_are_refused() -> None:
    CONTRACT.check_inputs()
    for change, message in (
        ({"grid": "healpix"}, "healpix"),
        ({"features_version": "0"}, "features version '0'"),
        ({"feature_names": ("depth",)}, "expects features"),
    ):
        with pytest.raises(ContractError, match=message):
            dataclasses.replace(CONTRACT, **change).check_inputs()  # type: ignore[arg-type]


def test_the_graph_signature_is_checked() -> None:
    inputs = {"maps": ["N", len(FEATURE_NAMES), 32, 32]}
    outputs = {"probabilities": ["N", 3], "descriptor": ["N", 64]}
    CONTRACT.check_signature(inputs, outputs)
    with pytest.raises(ContractError, match="'probabilities' of size 3"):
        CONTRACT.check_signature(inputs, {**outputs, "probabilities": ["N", 4]})
    with pytest.raises(ContractError, match="disagrees with the metadata"):
        CONTRACT.check_signature({"maps": ["N", 6, 16, 16]}, outputs)
    with pytest.raises(ContractError, match="takes"):
        CONTRACT.check_signature({"x": ["N", 6, 32, 32]}, outputs)


def test_the_shipped_model_reads_as_a_contract() -> None:
    onnx = pytest.importorskip("onnx")
    if not SHIPPED_MODEL.is_file():
        pytest.skip("no shipped model")
    model = onnx.load(str(SHIPPED_MODEL), load_external_data=False)
    metadata = {p.key: p.value for p in model.metadata_props}
    contract = ModelContract.from_metadata(metadata)
    contract.check_inputs()
    assert contract.to_metadata().items() <= metadata.items()  # written the same way


def test_the_contract_imports_no_torch() -> None:
    code = "import sys, raymap.contract\nassert 'torch' not in sys.modules\n"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
