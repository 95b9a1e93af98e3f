"""`make train` runs every run of the recipe, JOBS at a time, and fails when one of them fails
(the real Makefile, with a stand-in for the command line that records what it was asked)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

STAND_IN = """#!/bin/sh
[ "$1" = data ] && exit 0
echo "$*" >> "$(dirname "$0")/calls"
case "$*" in *"--out=runs/$FAIL "*|*"--out=runs/$FAIL") exit 3;; esac
"""


def make_train(tmp_path: Path, jobs: int, fail: str = "none") -> subprocess.CompletedProcess[str]:
    shutil.copy(REPO / "Makefile", tmp_path)
    for prerequisite in ("pyproject.toml", "setup.py", "raymap/_kernels.c"):
        (tmp_path / prerequisite).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / prerequisite).touch()
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / ".installed-cpu").touch()  # newer than the prerequisites
    cli = tmp_path / "cli"
    cli.write_text(STAND_IN)
    cli.chmod(0o755)
    return subprocess.run(
        ["make", "train", f"CLI={cli}", f"JOBS={jobs}", "SEEDS=0 1", "CALIBRATION_SPLITS=3"],
        cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "FAIL": fail},
    )  # fmt: skip


def runs(tmp_path: Path) -> dict[str, str]:
    calls = (tmp_path / "calls").read_text().splitlines()
    return {call.split("--out=runs/")[1].split()[0]: call for call in calls}


def test_make_train_trains_every_run_jobs_at_a_time(tmp_path: Path) -> None:
    done = make_train(tmp_path, jobs=3)
    assert done.returncode == 0, done.stderr
    trained = runs(tmp_path)
    assert sorted(trained) == [
        "so3-prelu-s0", "so3-prelu-s1", "so3-prelu-v3-s0", "so3-prelu-v3-s1",
        "z-prelu-s0", "z-prelu-s1",
    ]  # fmt: skip
    assert "--val_seed=3 --seed=1" in trained["so3-prelu-v3-s1"]
    assert "--train_rotation=z" in trained["z-prelu-s0"]
    assert all("--progress=False" in call for call in trained.values())
    assert (tmp_path / "runs" / "so3-prelu-v3-s0.log").exists()
    finished = [line for line in done.stdout.splitlines() if line.startswith("finished runs/")]
    assert len(finished) == 6


def test_make_train_fails_when_a_run_fails(tmp_path: Path) -> None:
    done = make_train(tmp_path, jobs=2, fail="so3-prelu-v3-s0")
    assert done.returncode != 0
    assert "FAILED runs/so3-prelu-v3-s0 (log: runs/so3-prelu-v3-s0.log)" in done.stdout.splitlines()
    assert len(runs(tmp_path)) == 6  # the others still ran


def test_make_train_alone_shows_the_runs_own_output(tmp_path: Path) -> None:
    done = make_train(tmp_path, jobs=1)
    assert done.returncode == 0, done.stderr
    assert len(runs(tmp_path)) == 6
    assert not any("--progress=False" in call for call in runs(tmp_path).values())
