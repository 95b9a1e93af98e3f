"""``spherical-shapes``: the project's command line.

    spherical-shapes classify FILE... [--json | --csv]     offline, on the ONNX runtime
    spherical-shapes retrieve FILE... --k N                offline, against the gallery
    spherical-shapes map FILE -o map.png                   the map the network sees
    spherical-shapes serve                                 the HTTP service and its page
    spherical-shapes data | train | evaluate | export ...  python -m raymap.datasets, model.train,
                                                           model.evaluate, export.onnx
    spherical-shapes gallery build DIR                     a gallery from a folder of meshes
    spherical-shapes card MODEL.onnx                       a model card from its metadata

``classify``, ``retrieve``, ``map`` and ``serve`` never import torch; the training front-ends
import it when they run. ``SHAPES_*`` variables configure the model, limits and gallery as
they do for the service.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from service.options import add_serve_options, apply_serve_options

if TYPE_CHECKING:
    from service.gallery import Gallery
    from service.runtime import Runtime
    from spherical_shapes.offline import Row

PROG = "spherical-shapes"
# Subcommands handed, with every argument after them, to another module's main().
FRONT_ENDS: dict[str, tuple[str, str]] = {
    "data": ("raymap.datasets.__main__", "build cached spherical maps (python -m raymap.datasets)"),
    "train": ("model.train", "train or fine-tune a model (python -m model.train --key=value)"),
    "evaluate": ("model.evaluate", "evaluate checkpoints (python -m model.evaluate)"),
    "export": ("export.onnx", "export a checkpoint to ONNX (python -m export.onnx)"),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0].split(": ")[1])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def inference(name: str, help_: str) -> argparse.ArgumentParser:
        q = sub.add_parser(name, help=help_, description=help_)
        q.add_argument("files", nargs="+", type=Path, metavar="FILE", help="meshes or folders")
        fmt = q.add_mutually_exclusive_group()
        fmt.add_argument("--json", action="store_true", help="JSON Lines, one object per file")
        fmt.add_argument("--csv", action="store_true", help="CSV with a header")
        q.add_argument("--model", type=Path, default=None, help="default: $SHAPES_MODEL_PATH")
        q.add_argument("--workers", type=int, default=None, help="casting threads (every core)")
        q.add_argument("--batch-size", type=int, default=32, help="maps per model call")
        q.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")
        q.add_argument("--no-progress", action="store_true")
        return q

    inference("classify", "classify mesh files offline: one row per file")
    retrieve = inference("retrieve", "the nearest gallery shapes of each file, offline")
    retrieve.add_argument("--k", type=int, default=10, help="neighbours per file")
    retrieve.add_argument("--label", default=None, help="only neighbours of this class")
    retrieve.add_argument(
        "--gallery", type=Path, default=None, help="a gallery .npz (default: the service's base)"
    )

    map_ = sub.add_parser("map", help="render a mesh's spherical map as a PNG")
    map_.add_argument("file", type=Path, metavar="FILE")
    map_.add_argument("-o", "--out", type=Path, required=True, help="PNG to write")
    map_.add_argument("--bandwidth", type=int, default=None, help="default: the model's, or 32")
    map_.add_argument("--model", type=Path, default=None)
    map_.add_argument("--scale", type=int, default=4, help="pixels per grid point")

    serve = sub.add_parser("serve", help="serve the model over HTTP (python -m service)")
    add_serve_options(serve)

    for name, (_module, help_) in FRONT_ENDS.items():
        sub.add_parser(name, help=help_, add_help=False)

    card = sub.add_parser("card", help="a model card (Markdown) from a model's ONNX metadata")
    card.add_argument("model", type=Path, metavar="MODEL.onnx")
    card.add_argument("-o", "--out", type=Path, default=None, help="default: stdout")

    gallery = sub.add_parser("gallery", help="gallery files")
    gallery_sub = gallery.add_subparsers(dest="gallery_command", required=True, metavar="ACTION")
    build = gallery_sub.add_parser(
        "build",
        help="descriptors of every mesh of a folder dataset (python -m service.build_gallery)",
    )
    build.add_argument(
        "folder", type=Path, nargs="?", metavar="DIR", help="DIR/<class>/[<split>/]*"
    )
    build.add_argument("--dataset", default=None, help="a named layout instead of DIR")
    build.add_argument("--model", type=Path, default=Path("models/model.onnx"))
    build.add_argument("--out", type=Path, required=True, help="the .npz to write")
    build.add_argument("--workers", type=int, default=None)
    build.add_argument("--no-progress", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in FRONT_ENDS:
        module = importlib.import_module(FRONT_ENDS[args_list[0]][0])
        return int(module.main(args_list[1:]) or 0)
    args = parser().parse_args(args_list)
    commands: dict[str, Callable[[argparse.Namespace], int]] = {
        "classify": classify,
        "retrieve": retrieve,
        "map": render,
        "serve": serve,
        "gallery": build_gallery,
        "card": write_card,
    }
    return commands[args.command](args)


# ----------------------------------------------------------------------------- inference


class Output:
    """Rows to a stream as a text table, JSON Lines (``--json``) or CSV (``--csv``)."""

    def __init__(self, args: argparse.Namespace, stream: TextIO, columns: list[str]) -> None:
        self.json = bool(args.json)
        self.stream = stream
        self.csv = csv.DictWriter(stream, columns, lineterminator="\n") if args.csv else None
        if self.csv is not None:
            self.csv.writeheader()

    def row(self, values: dict[str, Any], text: str) -> None:
        if self.json:
            self.stream.write(json.dumps(values) + "\n")
        elif self.csv is not None:
            self.csv.writerow({k: "" if v is None else v for k, v in values.items()})
        else:
            self.stream.write(text + "\n")
        self.stream.flush()


def _runtime(args: argparse.Namespace) -> Runtime:
    from service.runtime import Runtime
    from service.settings import get_settings

    settings = get_settings()
    model = args.model or settings.model_path
    threads = args.threads if args.threads is not None else settings.intra_op_threads
    return Runtime(model, device=settings.device, intra_op_threads=threads, warmup=False)


def _run_rows(args: argparse.Namespace, start: Callable[[Runtime], Callable[[Row], None]]) -> int:
    """Predict every file and hand each row to the writer ``start(runtime)`` returns.

    Exit code 1 when any file failed, 2 when the model cannot be loaded; a summary with the
    throughput goes to stderr.
    """
    from tqdm import tqdm

    from service.settings import get_settings
    from spherical_shapes.offline import expand, predict_files

    try:
        runtime = _runtime(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        write = start(runtime)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = expand(args.files)
    began = time.perf_counter()
    failed = 0
    rows = predict_files(runtime, paths, get_settings().max_faces, args.workers, args.batch_size)
    for row in tqdm(rows, total=len(paths), unit="file", disable=args.no_progress):
        failed += row.error is not None
        write(row)
    seconds = time.perf_counter() - began
    print(
        f"{len(paths)} files, {failed} failed, {seconds:.2f} s, "
        f"{len(paths) / max(seconds, 1e-9):.1f} files/s "
        f"({runtime.info.name} {runtime.info.version} on {runtime.provider})",
        file=sys.stderr,
    )
    return 1 if failed else 0


def classify(args: argparse.Namespace) -> int:
    def start(runtime: Runtime) -> Callable[[Row], None]:
        class_names = list(runtime.info.class_names)
        out = Output(args, sys.stdout, ["file", "label", "probability", "error", *class_names])

        def write(row: Row) -> None:
            probability = None if row.probability is None else round(row.probability, 6)
            values: dict[str, Any] = {
                "file": row.file,
                "label": row.label,
                "probability": probability,
                "error": row.error,
            }
            if row.probabilities is not None:
                scores = [round(float(p), 6) for p in row.probabilities]
                if args.json:
                    values["probabilities"] = dict(zip(class_names, scores, strict=True))
                elif args.csv:
                    values.update(zip(class_names, scores, strict=True))
            text = (
                f"{row.label:<20} {probability:.4f}  {row.file}"
                if row.error is None
                else f"{'ERROR':<20} {'':6}  {row.file}: {row.error}"
            )
            out.row(values, text)

        return write

    return _run_rows(args, start)


def retrieve(args: argparse.Namespace) -> int:
    if args.k < 1:
        print(f"error: --k must be >= 1, got {args.k}", file=sys.stderr)
        return 2

    def start(runtime: Runtime) -> Callable[[Row], None]:
        gallery = _open_gallery(args, runtime)
        columns = ["file", "label", "rank", "id", "neighbor_label", "score", "error"]
        out = Output(args, sys.stdout, columns)

        def write(row: Row) -> None:
            if row.error is not None or row.descriptor is None:
                values = dict.fromkeys(columns) | {"file": row.file, "error": row.error}
                out.row(values, f"{'ERROR':<20} {row.file}: {row.error}")
                return
            hits = gallery.search(row.descriptor, args.k, args.label)
            if args.json:
                neighbors = [
                    {"id": h.id, "label": h.label, "score": round(float(h.score), 6)} for h in hits
                ]
                out.row({"file": row.file, "label": row.label, "neighbors": neighbors}, "")
                return
            for rank, hit in enumerate(hits, 1):
                score = round(float(hit.score), 6)
                values = {"file": row.file, "label": row.label, "rank": rank, "id": hit.id,
                          "neighbor_label": hit.label, "score": score, "error": None}  # fmt: skip
                out.row(values, f"{row.file}  {rank:>3}  {score:.4f}  {hit.label:<16} {hit.id}")

        return write

    return _run_rows(args, start)


def _open_gallery(args: argparse.Namespace, runtime: Runtime) -> Gallery:
    """The gallery file (``--gallery``, else the service's base gallery) in the embedded backend.

    Its store of additions is a fresh temporary folder: the file is searched as the service
    searches it, and a running service's own store (one process only) is left alone.
    """
    import tempfile

    from service.gallery import open_gallery
    from service.settings import get_settings

    settings = get_settings()
    path = args.gallery or settings.gallery_path
    if path is None or not Path(path).is_file():
        raise FileNotFoundError(f"no gallery file at {path}; give --gallery FILE.npz")
    store = tempfile.mkdtemp(prefix="spherical-shapes-retrieve-")
    offline = settings.model_copy(
        update={"gallery_backend": "embedded", "gallery_path": Path(path), "gallery_dir": store}
    )
    return open_gallery(offline, int(runtime.info.descriptor_size), runtime.info.space)


# ----------------------------------------------------------------------------- the rest


def render(args: argparse.Namespace) -> int:
    from raymap.errors import MeshError
    from raymap.mesh import load_mesh_file
    from raymap.project import spherical_map
    from raymap.render import render_map

    bandwidth = args.bandwidth
    if bandwidth is None:
        model = args.model
        if model is None:
            from service.settings import get_settings

            model = get_settings().model_path
        bandwidth = _runtime_for_map(model) if Path(model).is_file() else 32
    try:
        spherical = spherical_map(load_mesh_file(args.file), bandwidth)
    except MeshError as exc:
        print(f"error: {args.file}: {exc.reason}", file=sys.stderr)
        return 1
    render_map(spherical, scale=args.scale).save(args.out)
    print(f"{args.out}: {spherical.shape[1]}x{spherical.shape[2]} grid (b = {bandwidth})")
    return 0


def _runtime_for_map(model: Path) -> int:
    from service.runtime import Runtime

    return Runtime(model, device="cpu", intra_op_threads=1, warmup=False).info.bandwidth


def serve(args: argparse.Namespace) -> int:
    from service.__main__ import main as serve_main

    apply_serve_options(args)
    return serve_main([])


def write_card(args: argparse.Namespace) -> int:
    from spherical_shapes.card import read_metadata, render_card

    text = render_card(read_metadata(args.model))
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
        print(f"wrote {args.out}")
    return 0


def build_gallery(args: argparse.Namespace) -> int:
    from service.build_gallery import main as gallery_main

    if (args.folder is None) == (args.dataset is None):
        print("error: give a folder DIR or --dataset NAME", file=sys.stderr)
        return 2
    source = ["--data", str(args.folder)] if args.folder else ["--dataset", args.dataset]
    argv = [*source, "--model", str(args.model), "--out", str(args.out)]
    if args.workers is not None:
        argv += ["--workers", str(args.workers)]
    if args.no_progress:
        argv.append("--no-progress")
    return gallery_main(argv)
