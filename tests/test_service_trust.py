"""``known`` and ``novelty`` in /classify and /retrieve: the model's novelty output against the
threshold from its ``trust`` metadata, or the ``novelty_threshold`` setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.runtime import ModelInfo, Runtime
from service.settings import Settings
from tests.service_testing import expected_prediction, mesh_bytes, upload
from tests.test_service_app import make_client, wait_ready


def _novelty(runtime: Runtime, data: bytes) -> float:
    spherical_map, _ = runtime.mesh_to_map(data, "off", Settings().max_faces)
    return float(runtime.run(spherical_map[None]).novelty[0])


def test_threshold_comes_from_the_trust_metadata(small_runtime: Runtime) -> None:
    metadata = dict(small_runtime.info.metadata)
    assert json.loads(metadata["trust"])["novelty_threshold"] is None  # an unfitted export
    assert small_runtime.info.novelty_threshold is None
    metadata["trust"] = json.dumps({"novelty_threshold": 1.5, "temperature": 2.0})
    info = ModelInfo.from_metadata(metadata, small_runtime.info.input_name)
    assert info.novelty_threshold == 1.5


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
