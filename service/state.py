"""What the app holds between requests: its settings, metrics, and the pipeline once loaded.

The model loads in the background after start-up (:meth:`ServiceState.load`): ``/livez``
answers at once, ``/readyz`` once the model is warmed up and the gallery is open; until then
:attr:`ServiceState.pipeline` is None and the routes that need it answer 503 ``not_ready``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from service.gallery import open_gallery
from service.metrics import Metrics
from service.pipeline import Pipeline, RuntimeLike
from service.settings import Settings

log = logging.getLogger("service.app")

RuntimeFactory = Callable[[Settings], RuntimeLike]


def load_runtime(settings: Settings) -> RuntimeLike:
    """The real onnxruntime runtime on ``settings.model_path``."""
    from service.runtime import Runtime

    return Runtime(
        settings.model_path,
        device=settings.device,
        intra_op_threads=settings.intra_op_threads,
        warmup=settings.warmup,
    )


class ServiceState:
    """Settings, metrics and the pipeline (None until loaded; ``load_error`` if that failed)."""

    def __init__(self, settings: Settings, runtime_factory: RuntimeFactory = load_runtime) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self._runtime_factory = runtime_factory
        self.pipeline: Pipeline | None = None
        self.load_error: str | None = None

    async def load(self) -> None:
        """Model, gallery, pipeline and a warm-up through the whole pipeline."""
        settings = self.settings
        pipeline: Pipeline | None = None
        try:
            start = time.perf_counter()
            runtime = await asyncio.to_thread(self._runtime_factory, settings)
            info = runtime.info
            gallery = await asyncio.to_thread(
                open_gallery, settings, int(info.descriptor_size), info.space
            )
            pipeline = Pipeline(runtime, gallery, settings, self.metrics)
            await pipeline.start()
            self.pipeline = pipeline
            self.metrics.ready.set(1)
            log.info(
                "ready",
                extra={
                    "model": f"{info.name} {info.version}",
                    "provider": runtime.provider,
                    "gallery_items": await pipeline.in_thread(gallery.count),
                    "gallery_backend": settings.gallery_backend,
                    "load_s": round(time.perf_counter() - start, 2),
                },
            )
        except BaseException as exc:  # a failure, or the app stopping while it loads
            if pipeline is not None and self.pipeline is None:
                await pipeline.close()
            if not isinstance(exc, Exception):
                raise
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.exception("loading the model or the gallery failed")

    async def close(self) -> None:
        pipeline, self.pipeline = self.pipeline, None
        self.metrics.ready.set(0)
        if pipeline is not None:
            await pipeline.close()
