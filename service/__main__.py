"""``python -m service``: serve the shipped model and gallery on ``$HOST:$PORT``.

``WEB_CONCURRENCY=N`` (N > 1) runs N worker processes on the one port (uvicorn's supervisor),
each with its own model session and cast pool and ``cores / N`` onnxruntime threads; the
embedded gallery store is shared by them (every worker sees every worker's writes). Every
serving process keeps large freed blocks for the next request (:mod:`service.allocator`).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

# Before numpy loads: BLAS thread pools in every request thread fight each other and the
# model's own threads (a 5k-item gallery search took 16 ms with OpenBLAS threads on a busy
# 2-core machine, 0.05 ms without). onnxruntime sizes its pool itself.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402

from service.allocator import keep_large_blocks  # noqa: E402
from service.app import create_app  # noqa: E402
from service.http import NoDelayH11Protocol  # noqa: E402
from service.logs import configure_logging  # noqa: E402
from service.options import add_serve_options, apply_serve_options  # noqa: E402
from service.runtime import _workers  # noqa: E402
from service.settings import Settings, get_settings  # noqa: E402


def app_factory() -> FastAPI:
    """The application of one worker process (logging configured in that process too)."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    keep_large_blocks()
    return create_app(settings)


def server_options(settings: Settings, workers: int) -> dict[str, Any]:
    """uvicorn's settings: N > 1 workers build the app in their own process (the factory)."""
    return {
        "app": "service.__main__:app_factory" if workers > 1 else create_app(settings),
        "factory": workers > 1,
        "workers": workers,
        "host": settings.host,
        "port": settings.port,
        "http": NoDelayH11Protocol,  # TCP_NODELAY on the workers' connections too
        "log_config": None,  # keep the structured logging configured above
        "access_log": False,
        "timeout_graceful_shutdown": 10,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m service",
        description="Serve the model and gallery over HTTP (the page, the API, /docs).",
        epilog="Every other setting is a SHAPES_* environment variable (README, Configuration).",
    )
    add_serve_options(parser)
    apply_serve_options(parser.parse_args(argv))
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    if not settings.model_path.is_file():
        print(
            f"no model at {settings.model_path}: set SHAPES_MODEL_PATH or export one with "
            "python -m export.onnx CHECKPOINT --out models/model.onnx",
            file=sys.stderr,
        )
        return 2
    keep_large_blocks()  # this process serves when there is one worker
    uvicorn.run(**server_options(settings, _workers(dict(os.environ))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
