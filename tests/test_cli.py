"""The ``spherical-shapes`` command line: offline rows equal the service's answers, errors are
rows, torch stays out of the inference commands, every command has its help."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from spherical_shapes.cli import FRONT_ENDS, main
from tests.service_testing import (
    CLASS_NAMES,
    MINI,
    REPO,
    ServerProcess,
    malformed_files,
    mesh_bytes,
    small_gallery_path,
    small_model_path,
    upload,
)

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The mini meshes in several formats, and every malformed file of the service tests."""
    root = tmp_path_factory.mktemp("meshes")
    for path in sorted(MINI.glob("*/*/*.off")):
        shutil.copy(path, root / path.name)
    (root / "chair_0890.stl").write_bytes(mesh_bytes("stl"))
    (root / "chair_0890.glb").write_bytes(mesh_bytes("glb"))
    broken = root / "broken"
    broken.mkdir()
    for name, data in malformed_files().items():
        (broken / name).write_bytes(data)
    (broken / "notes.txt").write_text("not a mesh")
    return root


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("cli")
    return {
        "SHAPES_MODEL_PATH": str(small_model_path()),
        "SHAPES_GALLERY_PATH": str(small_gallery_path()),
        "SHAPES_GALLERY_DIR": str(folder / "gallery"),
        "SHAPES_INTRA_OP_THREADS": "1",
    }


@pytest.fixture(scope="module")
def server(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    process = ServerProcess(env, tmp_path_factory.mktemp("server") / "server.log")
    try:
        process.wait_ready()
        yield process.url
    finally:
        process.stop()


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spherical_shapes", *args],
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_classify_gives_the_service_answer_for_every_file(folder, env, server) -> None:
    done = run_cli(
        "classify", "--json", "--workers", "2", "--batch-size", "5", str(folder), env=env
    )
    assert done.returncode == 1, done.stderr  # some files are broken
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert [row["file"] for row in rows] == [str(p) for p in files]  # a row per file, in order
    n_broken = len(list((folder / "broken").iterdir()))
    assert sum(row["error"] is not None for row in rows) == n_broken
    assert f"{len(files)} files, {n_broken} failed" in done.stderr
    for row, path in zip(rows, files, strict=True):
        response = httpx.post(f"{server}/classify", files=upload(path.name, path.read_bytes()))
        if row["error"] is not None:
            assert response.status_code in (415, 422), (path, response.text)
            continue
        assert response.status_code == 200, (path, response.text)
        body = response.json()
        assert row["label"] == body["label"]
        assert set(row["probabilities"]) == set(CLASS_NAMES)
        for name, p in body["probabilities"].items():
            assert abs(row["probabilities"][name] - p) < 1e-5, (path, name)


def test_classify_csv_and_exit_code_without_errors(env) -> None:
    paths = [str(p) for p in sorted(MINI.glob("*/test/*.off"))]
    done = run_cli("classify", "--csv", "--no-progress", *paths, env=env)
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["file"] for r in rows] == paths
    for r in rows:
        probabilities = np.array([float(r[c]) for c in CLASS_NAMES])
        assert r["label"] == CLASS_NAMES[int(probabilities.argmax())]
        assert abs(probabilities.sum() - 1) < 1e-4 and r["error"] == ""
    assert "files/s" in done.stderr


def test_retrieve_equals_the_service(env, server) -> None:
    path = sorted(MINI.glob("chair/test/*.off"))[0]
    done = run_cli("retrieve", "--json", "--k", "3", "--no-progress", str(path), env=env)
    assert done.returncode == 0, done.stderr
    (row,) = [json.loads(line) for line in done.stdout.splitlines()]
    response = httpx.post(
        f"{server}/retrieve", files=upload(path.name, path.read_bytes()), data={"k": "3"}
    ).json()
    assert [n["id"] for n in row["neighbors"]] == [n["id"] for n in response["neighbors"]]
    assert row["neighbors"][0]["id"] == path.stem  # the gallery holds the mini meshes


def test_inference_commands_never_import_torch(folder, env, tmp_path) -> None:
    code = (
        "import sys\n"
        "from spherical_shapes.cli import main\n"
        f"main(['classify', '--no-progress', {str(folder / 'chair_0890.stl')!r}])\n"
        f"main(['retrieve', '--no-progress', '--k', '2', {str(folder / 'chair_0890.stl')!r}])\n"
        f"main(['map', {str(folder / 'chair_0890.stl')!r}, '-o', {str(tmp_path / 'm.png')!r}])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "m.png").stat().st_size > 1000
    assert "16x16" not in done.stdout and "32x32 grid (b = 16)" in done.stdout  # the model's b


@pytest.mark.parametrize(
    "command",
    [[], ["classify"], ["retrieve"], ["map"], ["serve"], ["gallery"], ["gallery", "build"]]
    + [[name] for name in FRONT_ENDS],
)
def test_help_everywhere(command: list[str], capsys) -> None:
    try:
        code = main([*command, "--help"])
    except SystemExit as exit_:  # argparse's help
        code = exit_.code
    assert code in (0, None)
    out = capsys.readouterr().out
    assert "usage" in out.lower() or "--" in out


def test_gallery_build_from_a_folder(env, tmp_path) -> None:
    out = tmp_path / "gallery.npz"
    done = run_cli(
        "gallery",
        "build",
        str(MINI),
        "--model",
        env["SHAPES_MODEL_PATH"],
        "--out",
        str(out),
        "--workers",
        "1",
        "--no-progress",
        env={**env, "SHAPES_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert done.returncode == 0, done.stderr
    with np.load(out) as gallery:
        assert sorted(gallery["ids"].tolist()) == sorted(p.stem for p in MINI.glob("*/*/*.off"))
        assert set(gallery["labels"].tolist()) == set(CLASS_NAMES)


def test_card_is_generated_from_the_metadata(env, tmp_path) -> None:
    out = tmp_path / "CARD.md"
    assert main(["card", env["SHAPES_MODEL_PATH"], "-o", str(out)]) == 0
    card = out.read_text()
    assert card.startswith("# Model card: `")
    assert f"Classes: {', '.join(CLASS_NAMES)}." in card
    assert "b = 16" in card and "Trained from scratch" in card
