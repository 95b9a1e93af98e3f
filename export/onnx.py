"""Checkpoint -> ``model.onnx``: ``python -m export.onnx CHECKPOINT --out model.onnx``.

The exported graph maps spherical maps ``maps`` (N, C, 2b, 2b) float32, N dynamic, to
``probabilities`` (N, K) (softmax of the logits over the fitted temperature), ``descriptor``
(N, D) (the features centred/whitened on training statistics, then L2-normalized) and
``novelty`` (N, 1) (higher = less like the training classes): the checkpoint's ``post_hoc`` fit
of ``model.trust``, baked in as constants; the contract carries the novelty threshold and the
``trust`` metadata a summary of the fit. A checkpoint without a fit exports temperature 1, the
plain descriptor and the energy score with no threshold.

* Exporter: ``torch.onnx.export(dynamo=True)`` (torch.export + onnxscript). It writes reshapes
  with constant shapes and a symbolic batch axis; the TorchScript exporter (``dynamo=False``)
  works too but fills the graph with Shape/Gather/Unsqueeze/Concat chains around each reshape.
* The network's transforms are matrix products on precomputed matrices (``model.sht``), so
  the graph is MatMul/Transpose/Reshape plus BatchNormalization, Relu and the head: no DFT,
  no Loop, no custom domain (:func:`check_graph` enforces an allow-list).
* Constant folding: the spectral filters are learned at a few anchor degrees and interpolated
  by a matmul (``SpectralConv.degree_weights``). onnxscript's optimizer folds constant
  subgraphs only up to 8192 input elements, which leaves the larger layers recomputing their
  filters on every call; :func:`fold_constants` folds them all, so every node depends on the
  input (checked by :func:`constant_nodes`).
* ``metadata_props`` carry the model's contract (:class:`raymap.contract.ModelContract`,
  written by it; ``service.runtime`` reads it back and refuses a model that lacks a key) and
  its provenance; each value is JSON. See :func:`build_metadata`.
* The graph is traced at one batch size (``--batch-size``) and checked against PyTorch at
  others (``--check-batches``) on random maps; ``python -m export.parity`` checks real maps.
* ``--descriptor-space-of OLD.onnx``: a model whose descriptors are an older model's (a new
  fit that changed only the temperature, say) says so in its contract (``descriptor_space``),
  after :func:`space_of_same_descriptors` has checked it on random maps; galleries and stores
  made with the older model then stay valid for it (``ModelContract.space``).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import datetime
import json
import logging
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import torch

from model.checkpoint import load_model
from model.ensemble import is_ensemble
from model.net import SphericalCNN, multiply_adds, parameter_count
from model.trust import TrustedModel, descriptor_size, trust_metadata, trust_threshold
from raymap.contract import CORE_OUTPUTS, DESCRIPTOR, INPUT_NAME, NOVELTY, ModelContract

OPSET = 20
OUTPUT_NAMES = (*CORE_OUTPUTS, NOVELTY)  # the graph's outputs, named by the contract
EXPORT_BATCH = 2
CHECK_BATCHES = (1, 7, 32)
# Random-input agreement required right after export (real-data figures: export.parity).
CHECK_PROBABILITY_ATOL = 1e-4
CHECK_DESCRIPTOR_ATOL = 1e-4
CHECK_NOVELTY_RTOL = 1e-4
# Random maps on which --descriptor-space-of compares the two models' descriptors.
SPACE_CHECK_MAPS = 16
SPACE_CHECK_SEED = 1

MODEL_FILE_MODE = 0o644
# Standard ONNX ops a plain graph of this network may use; anything else fails the export.
ALLOWED_OPS = frozenset(
    {
        "Add",
        "BatchNormalization",
        "Cast",
        "Clip",
        "Concat",
        "Constant",
        "Div",
        "Einsum",
        "Expand",
        "Flatten",
        "Gather",
        "Gemm",
        "Identity",
        "MatMul",
        "Max",
        "Mul",
        "Neg",
        "Pow",
        "PRelu",
        "ReduceL2",
        "ReduceLogSumExp",
        "ReduceMax",
        "ReduceMean",
        "ReduceMin",
        "ReduceSum",
        "Relu",
        "Reshape",
        "Shape",
        "Sigmoid",
        "Slice",
        "Softmax",
        "Split",
        "Sqrt",
        "Squeeze",
        "Sub",
        "Sum",
        "Transpose",
        "Unsqueeze",
    }
)
# Named for the error message; they are outside ALLOWED_OPS anyway.
FORBIDDEN_OPS = frozenset({"DFT", "STFT", "Loop", "Scan", "If"})
DEFAULT_DOMAINS = frozenset({"", "ai.onnx"})


class ProbabilityModel(TrustedModel):
    """What is exported: SphericalCNN and its post-hoc fit -> (probabilities (N, K), unit
    descriptor (N, D), novelty (N, 1)); see ``model.trust.TrustedModel``."""

    def forward(self, maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        probabilities, descriptor, novelty = super().forward(maps)
        return probabilities, descriptor, novelty.unsqueeze(1)


def input_shape(network: SphericalCNN) -> tuple[int, int, int]:
    """(C, 2b, 2b) of one sample."""
    c = network.config
    return (c.in_channels, 2 * c.bandwidth, 2 * c.bandwidth)


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold every subgraph that does not depend on the input (no size limit)."""
    import onnxscript.optimizer

    unlimited = 1 << 40
    return onnxscript.optimizer.optimize(
        model, input_size_limit=unlimited, output_size_limit=unlimited
    )


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Hide the exporter's notes on torchvision ops and torch.export's deprecation warnings."""
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = registration.level
    registration.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        registration.setLevel(level)


def to_onnx(
    network: SphericalCNN,
    batch_size: int = EXPORT_BATCH,
    post_hoc: dict[str, object] | None = None,
) -> onnx.ModelProto:
    """Trace ``network`` (eval mode) at ``batch_size`` into a plain graph with a dynamic batch."""
    if batch_size < 2:
        # torch.export specializes a size-1 dimension to the constant 1.
        raise ValueError(f"export batch size must be >= 2, got {batch_size}")
    wrapper = ProbabilityModel(network.eval(), post_hoc).eval()
    example = torch.zeros(batch_size, *input_shape(network))
    with _quiet_exporter():
        program = torch.onnx.export(
            wrapper,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_shapes={"maps": {0: torch.export.Dim("batch", min=1)}},
            opset_version=OPSET,
            optimize=True,
            verbose=False,
        )
    model = fold_constants(program.model_proto)
    onnx.checker.check_model(model, full_check=True)
    return model


def _subgraphs(node: onnx.NodeProto) -> list[str]:
    return [a.name for a in node.attribute if a.type in (a.GRAPH, a.GRAPHS)]


def check_graph(model: onnx.ModelProto) -> list[str]:
    """Everything that makes the graph not plain; an empty list means it is."""
    problems = []
    for opset in model.opset_import:
        if opset.domain not in DEFAULT_DOMAINS:
            problems.append(f"opset import of domain {opset.domain!r}")
    problems += [f"model-local function {f.domain}::{f.name}" for f in model.functions]
    for node in model.graph.node:
        where = f"node {node.name!r}"
        if node.domain not in DEFAULT_DOMAINS:
            problems.append(f"{where}: op {node.domain}::{node.op_type} of a custom domain")
        elif node.op_type in FORBIDDEN_OPS:
            problems.append(f"{where}: forbidden op {node.op_type}")
        elif node.op_type not in ALLOWED_OPS:
            problems.append(f"{where}: op {node.op_type} is not in the allow-list")
        if _subgraphs(node):
            problems.append(f"{where}: has subgraphs {_subgraphs(node)}")
    return problems


def constant_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes (besides Constant) whose inputs are all constants: work that folding should do."""
    known = {init.name for init in model.graph.initializer}
    found = []
    for node in model.graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type == "Constant" or (inputs and all(name in known for name in inputs)):
            known.update(node.output)
            if node.op_type != "Constant":
                found.append(f"{node.op_type} {node.name!r}")
    return found


def op_counts(model: onnx.ModelProto) -> dict[str, int]:
    return dict(collections.Counter(node.op_type for node in model.graph.node).most_common())


def source_commit() -> tuple[str, bool | None]:
    """(``git rev-parse HEAD`` of this checkout or 'unknown', whether the tree has changes)."""
    repo = Path(__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=repo, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    try:
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        dirty = None
    return commit, dirty


def read_accuracy(value: str | None, state: dict[str, object]) -> dict[str, object]:
    """The ``accuracy`` metadata: from ``--accuracy`` (a number or a JSON file) or the history.

    Without ``--accuracy`` it is the test accuracy logged after the last training epoch.
    """
    train_config = state.get("train_config") or {}
    assert isinstance(train_config, dict)
    split = {
        "dataset": train_config.get("dataset"),
        "split": "test",
        "rotation": train_config.get("test_rotation"),
    }
    if value is not None:
        path = Path(value)
        if path.is_file():
            loaded = json.loads(path.read_text())
            if not isinstance(loaded, dict):
                raise ValueError(f"{path} must hold a JSON object, got {type(loaded).__name__}")
            return {**split, **loaded, "source": str(path.name)}
        try:
            top1 = float(value)
        except ValueError:
            raise ValueError(
                f"--accuracy must be a number in [0, 1] or a JSON file, got {value!r}"
            ) from None
        if not 0.0 <= top1 <= 1.0:
            raise ValueError(f"--accuracy must be in [0, 1], got {top1}")
        return {**split, "top1": top1, "source": "--accuracy"}
    history = state.get("history") or []
    assert isinstance(history, list)
    if is_ensemble(state):
        return {**split, "top1": None, "source": "none: an ensemble has no training history"}
    if not history:
        return {**split, "top1": None, "source": "none: no training history in the checkpoint"}
    last = history[-1]
    return {
        **split,
        "top1": last.get("test_acc"),
        "source": f"checkpoint history, epoch {last.get('epoch')}",
    }


def build_metadata(
    network: SphericalCNN,
    state: dict[str, object],
    accuracy: str | None = None,
    name: str | None = None,
    version: str = "1",
    descriptor_space: str | None = None,
) -> dict[str, str]:
    """The contract (what the service needs) and the provenance, each JSON-encoded, copied
    from the checkpoint; ``descriptor_space``: an older model's
    (:func:`space_of_same_descriptors`)."""
    config = network.config
    train_config = state.get("train_config") or {}
    assert isinstance(train_config, dict)
    dataset = train_config.get("dataset", "unknown")
    train_rotation = train_config.get("train_rotation", "unknown")
    grid = state["grid"]
    assert isinstance(grid, dict)
    if grid.get("bandwidth") != config.bandwidth:
        raise ValueError(f"checkpoint grid {grid} does not match bandwidth {config.bandwidth}")
    history = state.get("history") or []
    assert isinstance(history, list)
    commit, dirty = source_commit()
    contract = ModelContract(
        name=name or f"spherical-cnn-{dataset}-{train_rotation}",
        version=version,
        class_names=tuple(state["class_names"]),  # type: ignore[call-overload]
        bandwidth=config.bandwidth,
        feature_names=tuple(state["feature_names"]),  # type: ignore[call-overload]
        features_version=str(state["features_version"]),
        descriptor_size=descriptor_size(config.descriptor_size, state.get("post_hoc")),  # type: ignore[arg-type]
        grid=str(grid["name"]),
        extra_outputs=((NOVELTY, 1),),
        novelty_threshold=trust_threshold(state.get("post_hoc")),  # type: ignore[arg-type]
        descriptor_space=descriptor_space,
    )
    if contract.input_shape != input_shape(network):
        raise ValueError(
            f"the network takes {input_shape(network)}, the contract says {contract.input_shape}"
        )
    members = state["ensemble"]["members"] if is_ensemble(state) else None  # type: ignore[index]
    assert members is None or isinstance(members, list)
    values: dict[str, object] = {
        # An ensemble's: each member's architecture (``ensemble`` lists the members).
        "model_config": state["model_config"] if members else config.to_dict(),
        "parameters": parameter_count(network),
        "multiply_adds": multiply_adds(network),
        "training_data": {
            "dataset": dataset,
            "split": "train",
            "copies": train_config.get("train_copies"),
            "limit_per_class": train_config.get("limit_per_class"),
            "epochs": [m["selection"]["epoch"] for m in members] if members else len(history),
            "seed": [m["seed"] for m in members] if members else train_config.get("seed"),
        },
        "protocol": {
            "train_rotation": train_rotation,
            "test_rotation": train_config.get("test_rotation"),
            "name": f"{train_rotation}/{train_config.get('test_rotation')}",
        },
        "train_config": train_config,
        # The members of an ensemble (model.ensemble), best on validation first; null else.
        "ensemble": [
            {
                "seed": m["seed"],
                "source": m["source"],
                "epoch": m["selection"]["epoch"],
                "val_acc": m["selection"]["val_acc"],
            }
            for m in members
        ]
        if members
        else None,
        # How it was made (data, fine-tuning source, processes, device): for model cards.
        "recipe": state.get("recipe"),
        "accuracy": read_accuracy(accuracy, state),
        # The post-hoc fit (temperature, descriptor transform, novelty score); its threshold
        # is the contract's novelty_threshold.
        "trust": trust_metadata(state.get("post_hoc")),  # type: ignore[arg-type]
        "source_commit": commit,
        "source_dirty": dirty,
        "exported_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "exporter": f"torch {torch.__version__} dynamo, onnx {onnx.__version__}, opset {OPSET}",
    }
    if len(contract.class_names) != config.n_classes:
        raise ValueError(f"{len(contract.class_names)} class names for {config.n_classes} classes")
    return {**contract.to_metadata(), **{key: json.dumps(v) for key, v in values.items()}}


def set_metadata(model: onnx.ModelProto, metadata: dict[str, str]) -> None:
    del model.metadata_props[:]
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    model.doc_string = "Spherical CNN: spherical maps -> class probabilities, unit descriptor"


def compare_batches(
    network: SphericalCNN,
    model_path: str | Path,
    maps: np.ndarray,
    post_hoc: dict[str, object] | None = None,
) -> dict[str, float]:
    """Largest |probability| and |descriptor| and relative novelty difference of onnxruntime
    vs PyTorch on ``maps``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    probabilities, descriptor, novelty = session.run(list(OUTPUT_NAMES), {INPUT_NAME: maps})
    with torch.no_grad():
        expected = ProbabilityModel(network.eval(), post_hoc)(torch.from_numpy(maps))
    scale = float(np.abs(expected[2].numpy()).max()) or 1.0
    return {
        "probability": float(np.abs(probabilities - expected[0].numpy()).max()),
        "descriptor": float(np.abs(descriptor - expected[1].numpy()).max()),
        "novelty": float(np.abs(novelty - expected[2].numpy()).max()) / scale,
    }


def space_of_same_descriptors(
    network: SphericalCNN, post_hoc: dict[str, object] | None, older: str | Path
) -> str:
    """The descriptor space of the ``older`` exported model, after checking that this
    network with its fit computes the same descriptors (within ``CHECK_DESCRIPTOR_ATOL`` on
    random maps, onnxruntime for the older one); ``ValueError`` saying how they differ."""
    import onnxruntime as ort

    metadata = {
        p.key: p.value for p in onnx.load(str(older), load_external_data=False).metadata_props
    }
    contract = ModelContract.from_metadata(metadata)
    maps = np.random.default_rng(SPACE_CHECK_SEED).standard_normal(
        (SPACE_CHECK_MAPS, *input_shape(network)), dtype=np.float32
    )
    if contract.input_shape != maps.shape[1:]:
        raise ValueError(
            f"{older} takes maps of shape {contract.input_shape}, this network "
            f"{maps.shape[1:]}: not the same descriptors"
        )
    session = ort.InferenceSession(str(older), providers=["CPUExecutionProvider"])
    (theirs,) = session.run([DESCRIPTOR], {contract.input_name: maps})
    with torch.no_grad():
        ours = ProbabilityModel(network.eval(), post_hoc)(torch.from_numpy(maps))[1].numpy()
    if theirs.shape != ours.shape:
        raise ValueError(
            f"{older}'s descriptors have {theirs.shape[1]} numbers, this network's "
            f"{ours.shape[1]}: not the same descriptors"
        )
    gap = float(np.abs(theirs - ours).max())
    if gap > CHECK_DESCRIPTOR_ATOL:
        raise ValueError(
            f"this network's descriptors differ from {older}'s by up to {gap:.2e} on random "
            f"maps (allowed {CHECK_DESCRIPTOR_ATOL:g}): not the same descriptors"
        )
    return contract.space


def export_checkpoint(
    checkpoint: str | Path,
    out: str | Path,
    accuracy: str | None = None,
    name: str | None = None,
    version: str = "1",
    batch_size: int = EXPORT_BATCH,
    check_batches: tuple[int, ...] = CHECK_BATCHES,
    descriptor_space_of: str | Path | None = None,
) -> onnx.ModelProto:
    """Export, check the graph, write ``out`` with metadata, check other batch sizes.
    ``descriptor_space_of``: an older exported model whose descriptors this one computes
    (:func:`space_of_same_descriptors`)."""
    network, state = load_model(checkpoint)
    post_hoc = state.get("post_hoc")
    space = None
    if descriptor_space_of is not None:
        space = space_of_same_descriptors(network, post_hoc, descriptor_space_of)  # type: ignore[arg-type]
    model = to_onnx(network, batch_size, post_hoc)
    problems = check_graph(model) + [f"not folded: {n}" for n in constant_nodes(model)]
    if problems:
        raise RuntimeError("the exported graph is not plain:\n  " + "\n  ".join(problems))
    set_metadata(model, build_metadata(network, state, accuracy, name, version, space))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, suffix=".onnx", delete=False) as tmp:
        onnx.save(model, tmp.name)
    # A temporary file is private (0600); the model is read by services running as other users
    # (the image's non-root user), like any file a build writes.
    Path(tmp.name).chmod(MODEL_FILE_MODE)
    Path(tmp.name).replace(out)
    generator = np.random.default_rng(0)
    for n in check_batches:
        maps = generator.standard_normal((n, *input_shape(network)), dtype=np.float32)
        errors = compare_batches(network, out, maps, post_hoc)
        if (
            errors["probability"] > CHECK_PROBABILITY_ATOL
            or errors["descriptor"] > CHECK_DESCRIPTOR_ATOL
            or errors["novelty"] > CHECK_NOVELTY_RTOL
        ):
            raise RuntimeError(f"onnxruntime differs from PyTorch at batch {n}: {errors}")
        print(
            f"batch {n:3d}: max |dprob| {errors['probability']:.2e}, "
            f"max |ddesc| {errors['descriptor']:.2e}, max rel. |dnovelty| {errors['novelty']:.2e} "
            "(random maps, onnxruntime vs PyTorch)"
        )
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m export.onnx", description=__doc__.split("\n")[0]
    )
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--out", type=Path, default=Path("model.onnx"))
    parser.add_argument(
        "--accuracy",
        default=None,
        help="test top-1 in [0, 1] or a JSON file of evaluation figures "
        "(default: the last epoch's test accuracy in the checkpoint history)",
    )
    parser.add_argument("--name", default=None, help="model name (default spherical-cnn-DATA-ROT)")
    parser.add_argument("--version", default="1")
    parser.add_argument("--batch-size", type=int, default=EXPORT_BATCH, help="traced batch size")
    parser.add_argument(
        "--check-batches",
        default=",".join(map(str, CHECK_BATCHES)),
        help="batch sizes checked against PyTorch after export",
    )
    parser.add_argument(
        "--descriptor-space-of",
        type=Path,
        default=None,
        metavar="OLD.onnx",
        help="an exported model whose descriptors this one computes (checked on random maps): "
        "galleries made with it stay valid for this one",
    )
    args = parser.parse_args(argv)
    checks = tuple(int(n) for n in args.check_batches.split(",") if n)
    try:
        model = export_checkpoint(
            args.checkpoint,
            args.out,
            args.accuracy,
            args.name,
            args.version,
            args.batch_size,
            checks,
            args.descriptor_space_of,
        )
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    metadata = {p.key: p.value for p in model.metadata_props}
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    print("ops:", ", ".join(f"{op} {n}" for op, n in op_counts(model).items()))
    keys = ("model_name", "model_version", "bandwidth", "accuracy", "novelty_threshold")
    for key in (*keys, "descriptor_space"):  # no threshold without a fit, no space of another
        print(f"{key}: {metadata.get(key)}")
    print(f"trust: {metadata['trust']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
