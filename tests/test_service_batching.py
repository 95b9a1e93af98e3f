"""The micro-batcher on the real runtime (the small exported test model): concurrent maps
share model calls, rows go back to their requests, a lone request is not delayed, the queue is
bounded. Where a test needs the model to be slow, or to count its calls, it goes through
:class:`tests.service_testing.InstrumentedRuntime` (the real runtime, a sleep added)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from service.batching import BatchResult, MicroBatcher, Overloaded, ShuttingDown
from service.metrics import Metrics
from service.runtime import Runtime
from tests.service_testing import InstrumentedRuntime, mini_meshes, random_rotation, rotated_off


@pytest.fixture(scope="module")
def maps(small_runtime: Runtime) -> np.ndarray:
    """20 real spherical maps: the 12 mini-ModelNet10 meshes, then 8 of them turned at random."""
    meshes = [p.read_bytes() for p in mini_meshes("train") + mini_meshes("test")]
    rng = np.random.default_rng(7)
    path = mini_meshes("test")
    meshes += [rotated_off(path[i % len(path)], random_rotation(rng)) for i in range(8)]
    return np.stack([small_runtime.mesh_to_map(m, "off", 500_000)[0] for m in meshes])


@pytest.fixture(scope="module")
def expected(small_runtime: Runtime, maps: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each map's probabilities and descriptor, one map per model call; all distinct."""
    rows = []
    for map_ in maps:
        probabilities, descriptors, _ = small_runtime.run(map_[None])
        rows.append((probabilities[0], descriptors[0]))
    descriptors = np.stack([d for _, d in rows])
    gaps = np.abs(descriptors[:, None] - descriptors[None]).max(axis=2)
    assert gaps[~np.eye(len(maps), dtype=bool)].min() > 1e-4  # a mixed-up row would show
    return rows


def check_rows(results: list[BatchResult], expected: list[tuple[np.ndarray, np.ndarray]]) -> None:
    assert len(results) == len(expected)
    for result, (probabilities, descriptor) in zip(results, expected, strict=True):
        np.testing.assert_allclose(result.probabilities, probabilities, atol=1e-5)
        np.testing.assert_allclose(result.descriptor, descriptor, atol=1e-5)


async def run_many(batcher: MicroBatcher, maps: np.ndarray) -> list[BatchResult]:
    batcher.start()
    try:
        results = await asyncio.gather(*(batcher.submit(m) for m in maps))
    finally:
        await batcher.stop()
    return list(results)


def test_concurrent_maps_share_calls_and_get_their_own_rows(
    small_runtime: Runtime, maps: np.ndarray, expected: list[tuple[np.ndarray, np.ndarray]]
) -> None:
    model = InstrumentedRuntime(small_runtime, delay_s=0.02)
    metrics = Metrics()
    batcher = MicroBatcher(
        model.run, max_batch_size=8, max_wait_ms=5, max_queue=100, metrics=metrics
    )
    results = asyncio.run(run_many(batcher, maps))
    check_rows(results, expected)
    assert sum(model.batch_sizes) == 20
    assert max(model.batch_sizes) == 8  # full batches while the model was busy
    assert len(model.batch_sizes) <= 4
    # each result reports the size of the call it was in
    assert sorted(r.batch_size for r in results) == sorted(
        n for n in model.batch_sizes for _ in range(n)
    )
    assert b"shapes_batch_size_count" in metrics.render()


def test_batching_off_is_one_map_per_call(
    small_runtime: Runtime, maps: np.ndarray, expected: list[tuple[np.ndarray, np.ndarray]]
) -> None:
    model = InstrumentedRuntime(small_runtime)
    batcher = MicroBatcher(model.run, max_batch_size=1, max_wait_ms=5, max_queue=100)
    results = asyncio.run(run_many(batcher, maps[:6]))
    check_rows(results, expected[:6])
    assert model.batch_sizes == [1] * 6


def test_a_lone_request_does_not_wait_for_a_batch(small_runtime: Runtime, maps: np.ndarray) -> None:
    batcher = MicroBatcher(small_runtime.run, max_batch_size=8, max_wait_ms=500, max_queue=10)

    async def one() -> float:
        batcher.start()
        start = time.perf_counter()
        await batcher.submit(maps[0])
        elapsed = time.perf_counter() - start
        await batcher.stop()
        return elapsed

    assert asyncio.run(one()) < 0.25  # far below max_wait: nothing upstream could join


def test_waits_for_maps_still_upstream(
    small_runtime: Runtime, maps: np.ndarray, expected: list[tuple[np.ndarray, np.ndarray]]
) -> None:
    model = InstrumentedRuntime(small_runtime)
    upstream = {"n": 3}
    batcher = MicroBatcher(
        model.run, max_batch_size=4, max_wait_ms=200, max_queue=10, upstream=lambda: upstream["n"]
    )

    async def staggered() -> list[BatchResult]:
        batcher.start()

        async def late(index: int, delay: float) -> BatchResult:
            await asyncio.sleep(delay)
            upstream["n"] -= 1
            return await batcher.submit(maps[index])

        results = await asyncio.gather(late(0, 0.0), late(1, 0.02), late(2, 0.04))
        await batcher.stop()
        return list(results)

    check_rows(asyncio.run(staggered()), expected[:3])
    assert model.batch_sizes == [3]


def test_full_queue_raises_overloaded(small_runtime: Runtime, maps: np.ndarray) -> None:
    model = InstrumentedRuntime(small_runtime, delay_s=0.2)
    batcher = MicroBatcher(model.run, max_batch_size=1, max_wait_ms=0, max_queue=2)

    async def flood() -> list[object]:
        batcher.start()
        tasks = [asyncio.ensure_future(batcher.submit(m)) for m in maps[:6]]
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await batcher.stop()
        return results

    results = asyncio.run(flood())
    overloaded = [r for r in results if isinstance(r, Overloaded)]
    assert 1 <= len(overloaded) <= 4  # one may be running, two queued; the rest turned away
    assert all(not isinstance(r, Exception) or isinstance(r, Overloaded) for r in results)
    assert len(model.batch_sizes) == 6 - len(overloaded)


def test_model_errors_reach_every_request_of_the_batch(
    small_runtime: Runtime, maps: np.ndarray
) -> None:
    """Maps at half the model's resolution: the real runtime refuses the batch they make."""
    model = InstrumentedRuntime(small_runtime)
    batcher = MicroBatcher(model.run, max_batch_size=4, max_wait_ms=50, max_queue=10)
    small = np.ascontiguousarray(maps[:2, :, ::2, ::2])

    async def go() -> list[object]:
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(m) for m in small), return_exceptions=True)
        await batcher.stop()
        return results

    results = asyncio.run(go())
    assert model.batch_sizes == [2]
    assert all(isinstance(r, ValueError) and "maps must have shape" in str(r) for r in results)


def test_submit_after_stop_fails_cleanly(small_runtime: Runtime, maps: np.ndarray) -> None:
    batcher = MicroBatcher(small_runtime.run, max_batch_size=2, max_wait_ms=1, max_queue=10)

    async def go() -> None:
        batcher.start()
        await batcher.stop()
        with pytest.raises(ShuttingDown):
            await batcher.submit(maps[0])

    asyncio.run(go())


def test_bad_settings_are_rejected(small_runtime: Runtime) -> None:
    with pytest.raises(ValueError, match="max_batch_size >= 1"):
        MicroBatcher(small_runtime.run, max_batch_size=0, max_wait_ms=1, max_queue=1)
