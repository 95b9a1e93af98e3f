"""The pipeline every mesh route shares: admission, the cast pool under the time limit, the
permit that outlives a timed-out cast, and no FastAPI inside it. Through TestClient on the
real runtime and the small exported test model."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient

from service.runtime import Runtime
from tests.service_testing import CHAIR, REPO, InstrumentedRuntime, make_client, upload, wait_ready


def test_the_pipeline_imports_no_web_framework() -> None:
    code = (
        "import sys\n"
        "import service.pipeline, service.errors\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('fastapi', 'starlette'))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_spherical_map_has_the_time_limit_of_classify(
    tmp_path: Path, small_runtime: Runtime
) -> None:
    """Both routes answer 422 ``mesh_timeout`` with the same message when the cast outlives
    the limit: /classify's cast is held 0.2 s (the chair's own parse and cast take ~2 ms now,
    which can end before the event loop even sees a 1 ms timer), /spherical-map renders 64 x
    64 rays into a PNG, far longer than 1 ms."""
    off = CHAIR.read_bytes()
    runtime = InstrumentedRuntime(small_runtime, cast_delay_s=0.2)
    with make_client(tmp_path, runtime, mesh_timeout_s=0.001) as client:
        wait_ready(client)
        answers = [
            client.post("/classify", files=upload("c.off", off)),
            client.post("/spherical-map", files=upload("c.off", off), data={"bandwidth": "64"}),
        ]
    for response in answers:
        assert response.status_code == 422, response.text
        assert response.json()["kind"] == "mesh_timeout"
        assert "longer than 0.001 s" in response.json()["detail"]


def test_a_timed_out_cast_keeps_its_slot_for_every_mesh_route(
    tmp_path: Path, small_runtime: Runtime
) -> None:
    """One slot; a /classify whose cast outlives the time limit answers 422 at once but holds
    the slot until its thread ends: meanwhile /spherical-map (and /classify) get 503, after
    it they are served."""
    runtime = InstrumentedRuntime(small_runtime)
    off = CHAIR.read_bytes()
    with make_client(tmp_path, runtime, max_pending=1, mesh_timeout_s=0.3) as client:
        wait_ready(client)
        runtime.cast_delay_s = 5.0  # long: the machine may be busy
        start = time.monotonic()
        timed_out = client.post("/classify", files=upload("c.off", off))
        assert timed_out.status_code == 422 and timed_out.json()["kind"] == "mesh_timeout"
        busy = [
            client.post("/spherical-map", files=upload("c.off", off)),
            client.post("/classify", files=upload("c.off", off)),
        ]
        assert time.monotonic() - start < 4.5  # still within the slow cast
        for response in busy:
            assert response.status_code == 503, response.text
            assert response.json()["kind"] == "overloaded"
            assert response.headers["retry-after"] == "1"
        runtime.cast_delay_s = 0.0
        while True:  # the slot comes back when the slow thread ends, not before
            served = client.post("/spherical-map", files=upload("c.off", off))
            if served.status_code != 503 or time.monotonic() - start > 60:
                break
            time.sleep(0.05)
        # Admitted: a PNG, or on a very busy machine the 0.3 s limit again; never before the
        # slow thread ended.
        assert served.status_code in (200, 422), served.text
        assert time.monotonic() - start >= 5.0


def occupy_the_one_worker(
    client: TestClient, runtime: InstrumentedRuntime, off: bytes, seconds: float
) -> None:
    """An upload whose cast takes ``seconds``, past the limit: answered 422 ``mesh_timeout``
    at the limit while its thread holds the one mesh worker on."""
    wait_ready(client)
    runtime.cast_delay_s = seconds
    slow = client.post("/classify", files=upload("c.off", off))
    assert slow.status_code == 422 and slow.json()["kind"] == "mesh_timeout"


def test_an_upload_queued_behind_a_slow_cast_is_not_blamed_for_it(
    tmp_path: Path, small_runtime: Runtime
) -> None:
    """One mesh worker, busy past the limit with a slow upload (422 ``mesh_timeout``, its
    thread runs on): the next upload waits for the worker, and its limit counts from when the
    worker starts it, so it is served (it took 0.6 s of its own, 1.2 s since it came)."""
    runtime = InstrumentedRuntime(small_runtime)
    off = CHAIR.read_bytes()
    with make_client(tmp_path, runtime, cast_workers=1, mesh_timeout_s=1.0) as client:
        occupy_the_one_worker(client, runtime, off, seconds=1.6)
        runtime.cast_delay_s = 0.6
        start = time.monotonic()
        queued = client.post("/classify", files=upload("c.off", off))
        assert queued.status_code == 200, queued.text
        assert time.monotonic() - start > 1.0  # longer than the limit since it came


def test_an_upload_that_never_gets_a_worker_is_told_to_retry(
    tmp_path: Path, small_runtime: Runtime
) -> None:
    """The one mesh worker stays busy longer than the limit: the queued upload is dropped
    and answered 503 ``overloaded`` with Retry-After (the server is busy), not 422
    ``mesh_timeout`` (which says the file is at fault), and ``/readyz`` says ``busy`` (a load
    balancer sends uploads elsewhere); after the worker frees, both are served."""
    runtime = InstrumentedRuntime(small_runtime)
    off = CHAIR.read_bytes()
    with make_client(tmp_path, runtime, cast_workers=1, mesh_timeout_s=0.5) as client:
        occupy_the_one_worker(client, runtime, off, seconds=3.0)
        runtime.cast_delay_s = 0.0
        queued = client.post("/classify", files=upload("c.off", off))
        assert queued.status_code == 503, queued.text
        assert queued.json()["kind"] == "overloaded"
        assert "mesh workers stayed busy" in queued.json()["detail"]
        assert queued.headers["retry-after"] == "1"
        stalled = client.get("/readyz")
        assert stalled.status_code == 503 and stalled.json()["status"] == "busy", stalled.text
        assert "past the time limit" in stalled.json()["detail"]
        time.sleep(3.0)
        assert client.get("/readyz").status_code == 200
        assert client.post("/classify", files=upload("c.off", off)).status_code == 200
