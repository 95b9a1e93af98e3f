"""The README's tutorial, run as written: the block after the ``<!-- tutorial`` marker, in a
fresh folder laid out like the repository (``models/modelnet10.pt``, ``../shared/data``), with
the sizes at its top set small through the environment."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model.checkpoint import read_checkpoint
from raymap.datasets import default_data_dir
from tests.service_testing import free_port

REPO = Path(__file__).resolve().parent.parent
MARKER = "<!-- tutorial"


def tutorial_block() -> str:
    readme = (REPO / "README.md").read_text()
    after = readme[readme.index(MARKER) :]
    match = re.search(r"```sh\n(.*?)```", after, re.DOTALL)
    assert match, "no ```sh block after the tutorial marker"
    return match.group(1)


def fine_tune_source(tmp_path: Path) -> Path:
    """The shipped ModelNet10 checkpoint, or else a one-epoch one of the same network."""
    shipped = REPO / "models" / "modelnet10.pt"
    if shipped.is_file():
        return shipped
    out = tmp_path / "source-run"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "model.train",
            f"--data={REPO / 'tests' / 'fixtures' / 'modelnet10_mini'}",
            "--init_from=none",
            "--epochs=1",
            "--val_fraction=0",
            "--batch_size=4",
            "--threads=1",
            "--progress=false",
            f"--out={out}",
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "SHAPES_CACHE_DIR": str(tmp_path / "cache")},
        check=True,
        capture_output=True,
    )
    return out / "checkpoint.pt"


def test_the_readme_tutorial_runs_as_written(tmp_path: Path) -> None:
    if not (default_data_dir() / "shrec11" / "shrec11.tar.xz").is_file():
        pytest.skip("no SHREC'11 archive")
    work = tmp_path / "repo"
    (work / "models").mkdir(parents=True)
    (work / "models" / "modelnet10.pt").symlink_to(fine_tune_source(tmp_path))
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "data").symlink_to(default_data_dir())
    bin_dir = tmp_path / "bin"  # `spherical-shapes` as `make setup` installs it, for this tree
    bin_dir.mkdir()
    shim = bin_dir / "spherical-shapes"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m spherical_shapes "$@"\n')
    shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": str(REPO),
        "EPOCHS": "1",
        "FT_EPOCHS": "1",
        "LIMIT": "2",
        "PORT": str(free_port()),
        "SHAPES_CACHE_DIR": str(tmp_path / "cache"),
        "SHAPES_GALLERY_DIR": str(tmp_path / "gallery"),
        "SHAPES_LOG_LEVEL": "warning",
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", tutorial_block()],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    run = work / "runs" / "shrec11"
    assert '"label"' in done.stdout  # the server's answer to curl
    rows = list(csv.DictReader((run / "predictions.csv").open()))
    assert len(rows) == 120 and all(row["error"] == "" for row in rows)
    assert {row["label"] for row in rows} <= {p.name for p in (work / "data" / "shrec11").iterdir()}
    card = (run / "MODEL_CARD.md").read_text()
    assert "Fine-tuned from `models/modelnet10.pt`" in card and "alien" in card
    scratch = work / "runs" / "shrec11-scratch"
    assert (scratch / "evaluation" / "confusion-so3-so3.png").is_file()
    assert read_checkpoint(scratch / "best.pt")["recipe"]["fine_tuned_from"] is None
    shutil.rmtree(work / "data")
