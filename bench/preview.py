"""What ``preview=true`` adds to ``/classify``: time and response size, with and without,
interleaved in one run on the shipped model (in process, TestClient; one request at a time).

    python bench/preview.py [MESH ...]   # default: the fixture chair, two large ModelNet10
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from fastapi.testclient import TestClient

from raymap.datasets import default_cache_dir
from service.app import create_app
from service.settings import Settings

REPO = Path(__file__).resolve().parent.parent
RAW = default_cache_dir() / "raw" / "ModelNet10"
DEFAULT_MESHES = (
    REPO / "tests" / "fixtures" / "meshes" / "chair_0890.off",
    RAW / "chair" / "test" / "chair_0943.off",
    RAW / "bathtub" / "test" / "bathtub_0150.off",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("meshes", nargs="*", type=Path, default=list(DEFAULT_MESHES))
    parser.add_argument("--model", type=Path, default=REPO / "models" / "model.onnx")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as store:
        settings = Settings(model_path=args.model, gallery_path=None, gallery_dir=Path(store))
        with TestClient(create_app(settings)) as client:
            while client.get("/readyz").status_code != 200:
                time.sleep(0.1)
            for mesh in args.meshes:
                data = mesh.read_bytes()
                runs: dict[bool, list[tuple[float, float, int]]] = {False: [], True: []}
                for _ in range(args.repeat):
                    for preview in (False, True):
                        response = client.post(
                            "/classify",
                            files={"file": (mesh.name, data)},
                            data={"preview": str(preview).lower()},
                        )
                        response.raise_for_status()
                        t = response.json()["timings_ms"]
                        extra = t.get("preview", 0.0) + t.get("thumbnail", 0.0)
                        runs[preview].append((t["total"], extra, len(response.content)))
                median = {
                    k: [statistics.median(r[i] for r in v) for i in range(3)]
                    for k, v in runs.items()
                }
                print(
                    f"{mesh.name}: without preview {median[False][0]:.0f} ms, "
                    f"{median[False][2] / 1024:.1f} KiB; with preview {median[True][0]:.0f} ms "
                    f"(preview + thumbnail stages {median[True][1]:.0f} ms), "
                    f"{median[True][2] / 1024:.1f} KiB; medians of {args.repeat}"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
