"""``known`` and ``novelty`` in /classify and /retrieve: the model's novelty output against the
threshold of its contract, or the ``novelty_threshold`` setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raymap.contract import ModelContract
from service.runtime import Runtime
from service.settings import Settings
from tests.service_testing import expected_prediction, make_client, mesh_bytes, upload, wait_ready


def _novelty(runtime: Runtime, data: bytes) -> float:
    spherical_map, _ = runtime.mesh_to_map(data, "off", Settings().max_faces)
    return float(runtime.run(spherical_map[None]).novelty[0])


def test_threshold_comes_from_the_contract(small_runtime: Runtime) -> None:
    metadata = dict(small_runtime.metadata)
    assert "novelty_threshold" not in metadata  # an unfitted export has none
    assert json.loads(metadata["trust"])["fitted"] is False
    assert small_runtime.info.novelty_threshold is None
    assert small_runtime.info.outputs["novelty"] == 1
    metadata["novelty_threshold"] = json.dumps(1.5)
    assert ModelContract.from_metadata(metadata).novelty_threshold == 1.5


def test_responses_say_known_and_novelty(tmp_path: Path, small_runtime: Runtime) -> None:
    data = mesh_bytes("off")
    novelty = _novelty(small_runtime, data)
    expected = expected_prediction(small_runtime, data, "off")
    cases = [(None, True), (novelty - 0.5, False), (novelty + 0.5, True)]
    for i, (threshold, known) in enumerate(cases):
        with make_client(tmp_path / str(i), small_runtime, novelty_threshold=threshold) as client:
            wait_ready(client)
            body = client.post("/classify", files=upload("c.off", data)).json()
            assert body["novelty"] == pytest.approx(novelty, rel=1e-5, abs=1e-6)
            assert body["known"] is known
            assert body["label"] == expected.label  # the closest class either way
            found = client.post("/retrieve", files=upload("c.off", data), data={"k": "1"}).json()
            assert found["known"] is known
            assert found["novelty"] == pytest.approx(novelty, rel=1e-5, abs=1e-6)
