"""Train the spherical CNN: ``python -m model.train --key=value ...``.

Reads top to bottom: config, data (the training split minus a stratified validation split of
``val_fraction`` of its meshes, drawn with the fixed ``val_seed``), model, optimizer, an
optional weight average (``average=ema|swa``), then one loop over epochs of ``model.step``'s
step. Each epoch ends with an evaluation on the validation and the test split, a log line, and a
checkpoint that resumes exactly (weights, average, optimizer, schedule, random state, history).
The validation split alone chooses the epoch: ``best.pt`` (``model.checkpoint.best_path``) holds
the model of the epoch with the highest validation accuracy (the averaged weights when
averaging); the test split is only reported. Re-running the same command after an interruption
continues from the last finished epoch; ``--epochs`` may differ on the re-run to extend or
shorten training (the learning-rate schedule follows the new count).

``seed`` draws the initial weights and the batch order; ``data_seed`` the rotations of the
cached training and test maps (one build serves every ``seed``).

``--data=DIR`` trains on a folder of class folders (``raymap.datasets.sources``) instead of a
named ``dataset``, fine-tuned by default from the shipped ModelNet10 checkpoint
(``models/modelnet10.pt``): its layers, a new classifier head (``model.finetune``).
``--init_from=CHECKPOINT`` fine-tunes from another checkpoint, ``--init_from=none`` trains from
scratch (the default for a named dataset). ``torchrun --nproc-per-node=N -m model.train ...``
trains on N processes with the same global batch (``model.distributed``); only rank 0
evaluates and writes, and a checkpoint resumes on any number of processes. Each checkpoint
carries its ``recipe`` (settings, data, source model, processes, device), which export copies
into the ONNX metadata.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from model import distributed, step
from model.checkpoint import (
    best_path,
    checkpoint_path,
    model_artifact,
    read_checkpoint,
    save_checkpoint,
)
from model.config import apply_overrides
from model.data import MapSet, batches, dataset_of, load_maps, split_validation, subset
from model.ensemble import is_ensemble
from model.finetune import (
    finetune_config,
    load_pretrained,
    pretrained_parameters,
    resolve_source,
    source_summary,
)
from model.net import SphericalCNN, describe, preset_config


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = "modelnet10"
    # A folder dataset instead of ``dataset``: DIR/<class>/<split>/* or DIR/<class>/* (see
    # raymap.datasets.sources); its validation split, when it has one, replaces val_fraction.
    data: str | None = None
    # Fine-tune: the pretrained layers of this checkpoint, a new classifier head; the
    # architecture and bandwidth are the checkpoint's (``bandwidth`` is replaced by its).
    # auto: the shipped ModelNet10 checkpoint for a folder dataset (``data``), from scratch for
    # a named one; none: from scratch (model.finetune.resolve_source).
    init_from: str | None = "auto"
    freeze_epochs: int = 0  # epochs training only the new head (with init_from)
    amp: bool = True  # bfloat16 autocast on CUDA (no effect on the CPU)
    architecture: str = "paper"  # a key of model.net.PRESETS
    bandwidth: int = 32
    train_rotation: str = "so3"  # none | z | so3, applied to meshes before ray casting
    train_copies: int = 1
    # Anisotropic scaling of each training copy (raymap.datasets.stretch: factors per axis in
    # [1/(1+s), 1+s]); the validation split keeps the meshes' own proportions.
    train_stretch: float = 0.0
    test_rotation: str = "so3"
    seed: int = 0  # initial weights, batch order
    data_seed: int = 0  # rotations of the training and test maps
    val_fraction: float = 0.1  # of the training meshes, per class
    val_seed: int = 0
    average: str = "none"  # none | ema (every step) | swa (epoch ends from swa_start on)
    ema_decay: float = 0.999
    swa_start: float = 0.5  # fraction of the epochs
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    # The learning rate is multiplied by lr_gamma at these fractions of the training.
    lr_milestones: tuple[float, ...] = (0.6, 0.85)
    lr_gamma: float = 0.1
    label_smoothing: float = 0.0
    dropout: float = 0.3
    activation: str = "relu"  # of the spherical blocks: relu | prelu (model.net.ACTIVATIONS)
    # Weight of an auxiliary loss: a classifier on each branch's spherical mean, its
    # cross-entropy averaged over the branches and added to the main loss (0: no such heads).
    branch_loss: float = 0.0
    limit_per_class: int | None = None  # for quick experiments
    threads: int = 0  # 0 = torch's default
    device: str = "auto"  # auto | cpu | cuda
    out: str = "runs/modelnet10-so3"
    progress: bool = True


# Settings that may change between a run and its resumption: they do not change what an epoch
# computes (``epochs`` extends or shortens the run; the schedule follows the new count; ``out``
# lets a run folder be moved). The number of processes is no setting: a run resumes on any
# number (model.distributed).
RESUMABLE_CHANGES = frozenset({"epochs", "progress", "threads", "device", "out"})


def same_run(saved: dict[str, object], now: dict[str, object]) -> bool:
    """Whether ``now`` continues the run ``saved``. A setting the saved run did not have (added
    to TrainConfig since) counts as its default, which keeps the earlier behaviour."""
    defaults = dataclasses.asdict(TrainConfig())
    keys = (set(saved) | set(now)) - RESUMABLE_CHANGES
    return all(saved.get(k, defaults.get(k)) == now.get(k) for k in keys)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def evaluate_logits(model: nn.Module, data: MapSet, device: torch.device) -> torch.Tensor:
    model.eval()
    out = []
    with torch.no_grad():
        for index in batches(len(data), 128):
            logits, _ = model(data.maps[index].to(device))
            out.append(logits.float().cpu())
    return torch.cat(out)


def lr_factor(config: TrainConfig, epoch: int) -> float:
    passed = sum(epoch >= math.ceil(m * config.epochs) for m in config.lr_milestones)
    return config.lr_gamma**passed


def make_average(model: SphericalCNN, config: TrainConfig) -> AveragedModel | None:
    """The run's weight average (``model.step.make_average``), or None."""
    return step.make_average(model, config.average, config.ema_decay)


def swa_epoch(config: TrainConfig, epoch: int) -> bool:
    return epoch >= math.ceil(config.swa_start * config.epochs) - 1


def measure(model: nn.Module, data: MapSet, device: torch.device) -> tuple[float, float]:
    """(accuracy, mean negative log-likelihood) on ``data``; NaN for an empty split."""
    if not len(data):
        return math.nan, math.nan
    logits = evaluate_logits(model, data, device)
    loss = float(F.cross_entropy(logits, data.labels))
    return float((logits.argmax(1) == data.labels).float().mean()), loss


def train(config: TrainConfig) -> Path:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    group = distributed.setup(pick_device(config.device))
    device = group.device
    group.check_batch_size(config.batch_size)
    say = print if group.is_main else _silent
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)

    config = dataclasses.replace(config, init_from=resolve_source(config.init_from, config.data))
    source = read_checkpoint(config.init_from) if config.init_from else None
    if source is not None:  # the maps are made at the source network's bandwidth
        config = dataclasses.replace(config, bandwidth=int(source["model_config"]["bandwidth"]))
    train_set, val_set, test_set = load_data(config, progress=config.progress and group.is_main)
    say(f"{len(train_set)} training, {len(val_set)} validation, {len(test_set)} test maps")
    n_classes = len(train_set.class_names)
    if source is not None:
        model_config = finetune_config(source, n_classes, config.dropout)
    else:
        model_config = preset_config(
            config.architecture,
            dropout=config.dropout,
            activation=config.activation,
            branch_heads=config.branch_loss > 0,
        )
        model_config = dataclasses.replace(
            model_config, bandwidth=config.bandwidth, n_classes=n_classes
        )
    model = SphericalCNN(model_config).to(device)
    if source is not None:
        copied = load_pretrained(model, source)
        member = ""
        if is_ensemble(source):  # model.finetune.network_weights: the first member's
            first = source["ensemble"]["members"][0]
            member = f" (the ensemble's first member, seed {first['seed']})"
        say(f"fine-tuning: {copied} pretrained tensors from {config.init_from}{member}, a new head")
    say(describe(model), f"on {device}", f"x {group.world_size} processes", flush=True)
    recipe = make_recipe(config, group, train_set, val_set, test_set, source)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    average = make_average(model, config)
    autocast = config.amp and device.type == "cuda"

    start_epoch, history, seconds = 0, [], 0.0
    best: dict[str, float] = {"val_acc": -1.0, "val_loss": math.inf, "epoch": 0}
    path = checkpoint_path(out)
    if path.is_file():
        state = read_checkpoint(path, device)
        if not same_run(state["train_config"], dataclasses.asdict(config)):
            raise SystemExit(
                f"{path} was written with other settings; use another --out or delete it.\n"
                f"saved: {state['train_config']}\nnow:   {dataclasses.asdict(config)}"
            )
        model.load_state_dict(state["weights"])
        optimizer.load_state_dict(state["optimizer"])
        if average is not None:
            average.load_state_dict(state["average"])
        torch.set_rng_state(state["rng_state"])
        start_epoch, history, seconds = state["epoch"] + 1, state["history"], state["seconds"]
        best = state["best"]
        say(f"resuming after epoch {state['epoch'] + 1} from {path}", flush=True)
    net = group.prepare(model)  # the same parameters, wrapped for N processes

    for epoch in range(start_epoch, config.epochs):
        began, began_cpu = time.perf_counter(), time.process_time()
        for param_group in optimizer.param_groups:
            param_group["lr"] = config.lr * lr_factor(config, epoch)
        frozen = pretrained_parameters(model) if epoch < config.freeze_epochs and source else []
        net.train()
        shuffle = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        loss_sum, correct, seen = 0.0, 0, 0
        steps = batches(len(train_set), config.batch_size, shuffle, drop_last=True)
        bar = tqdm(
            steps,
            desc=f"epoch {epoch + 1}/{config.epochs}",
            disable=not (config.progress and group.is_main),
        )
        for global_index in bar:
            index = group.shard(global_index)  # this process's part of the global batch
            maps = train_set.maps[index].to(device, non_blocking=True)
            labels = train_set.labels[index].to(device, non_blocking=True)
            loss, logits = step.training_step(
                net,
                optimizer,
                maps,
                labels,
                label_smoothing=config.label_smoothing,
                branch_loss=config.branch_loss,
                autocast=autocast,
                frozen=frozen,
            )
            if average is not None and config.average == "ema":
                average.update_parameters(model)
            loss_sum += loss.item() * len(index)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(index)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        loss_sum, correct, seen = group.sum([loss_sum, correct, seen])
        train_seconds = time.perf_counter() - began
        cpu_seconds = time.process_time() - began_cpu
        seconds += train_seconds
        if average is not None and config.average == "swa" and swa_epoch(config, epoch):
            average.update_parameters(model)
        if not group.is_main:  # rank 0 evaluates and writes; the others wait for it
            group.barrier()
            continue
        averaged = average is not None and int(average.n_averaged) > 0
        chosen: nn.Module = average.module if averaged else model  # type: ignore[union-attr]
        val_acc, val_loss = measure(chosen, val_set, device)
        test_acc, _ = measure(chosen, test_set, device)
        # The raw weights too, so that one run compares averaging against none.
        raw = {}
        if averaged:
            raw_val_acc, raw_val_loss = measure(model, val_set, device)
            raw_test_acc, _ = measure(model, test_set, device)
            raw = {"raw_val_acc": raw_val_acc, "raw_val_loss": raw_val_loss}
            raw["raw_test_acc"] = raw_test_acc
        record = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": loss_sum / seen,
            "train_acc": correct / seen,
            "val_acc": val_acc,
            "val_loss": val_loss,
            "test_acc": test_acc,
            **raw,
            "epoch_seconds": train_seconds,
            "epoch_cpu_seconds": cpu_seconds,
            "train_seconds": seconds,
            "processes": group.world_size,
        }
        history.append(record)
        print(
            f"epoch {epoch + 1:3d}/{config.epochs} lr {record['lr']:.1e} "
            f"loss {record['train_loss']:.4f} train {record['train_acc']:.4f} "
            f"val {val_acc:.4f} ({val_loss:.3f}) test {test_acc:.4f} "
            f"({train_seconds:.0f}s wall, {cpu_seconds:.0f}s cpu; "
            f"total {seconds / 60:.1f} min)",
            flush=True,
        )
        artifact = {"recipe": recipe, **model_artifact(model, train_set.class_names, config)}
        # Without a validation split (val_fraction=0) the last epoch is the chosen one.
        if not len(val_set) or (val_acc, -val_loss) > (best["val_acc"], -best["val_loss"]):
            best = {"val_acc": val_acc, "val_loss": val_loss, "epoch": epoch + 1}
            assert isinstance(chosen, SphericalCNN)
            selected = {
                "recipe": recipe,
                **model_artifact(chosen, train_set.class_names, config),
                "selection": best,
            }
            save_checkpoint({**selected, "history": history, "seconds": seconds}, best_path(out))
        save_checkpoint(
            {
                **artifact,
                "optimizer": optimizer.state_dict(),
                "average": None if average is None else average.state_dict(),
                "rng_state": torch.get_rng_state(),
                "epoch": epoch,
                "history": history,
                "seconds": seconds,
                "best": best,
            },
            path,
        )
        group.barrier()
    if group.is_main:
        (out / "history.json").write_text(json.dumps(history, indent=1))
        print(
            f"chosen on validation: epoch {best['epoch']} (val {best['val_acc']:.4f})", flush=True
        )
    group.close()
    return path


def load_data(config: TrainConfig, progress: bool) -> tuple[MapSet, MapSet, MapSet]:
    """(train, validation, test) maps: the folder's splits, or a named dataset's.

    The validation split is the folder's own when it has one, else ``val_fraction`` of the
    training meshes (``val_seed``); a folder without a test split gives an empty test set.
    """
    dataset, root = dataset_of(dataclasses.asdict(config))

    def split(name: str, rotation: str, copies: int, stretch: float = 0.0) -> MapSet | None:
        try:
            return load_maps(
                dataset,
                name,
                config.bandwidth,
                rotation,
                copies,
                config.data_seed,
                limit_per_class=config.limit_per_class,
                progress=progress,
                root=root,
                stretch=stretch,
            )
        except FileNotFoundError:
            if name == "train":
                raise
            return None  # a folder without this split

    full_train = split("train", config.train_rotation, config.train_copies, config.train_stretch)
    assert full_train is not None
    own_validation = split("validation", config.test_rotation, 1) if root else None
    if own_validation is not None:
        train_set, val_set = full_train, own_validation
    else:
        train_set, val_set = split_validation(full_train, config.val_fraction, config.val_seed)
        if config.train_stretch:  # the same held-out meshes and rotations, unstretched
            unstretched = split("train", config.train_rotation, config.train_copies)
            assert unstretched is not None
            _, val_set = split_validation(unstretched, config.val_fraction, config.val_seed)
    test_set = split("test", config.test_rotation, 1)
    if test_set is None:
        test_set = subset(train_set, np.zeros(len(train_set), dtype=bool))
    return train_set, val_set, test_set


def make_recipe(
    config: TrainConfig,
    group: distributed.Distributed,
    train_set: MapSet,
    val_set: MapSet,
    test_set: MapSet,
    source: dict[str, Any] | None,
) -> dict[str, Any]:
    """How the model was made, for model cards: settings, data, source model, machine."""
    dataset, root = dataset_of(dataclasses.asdict(config))
    counts = np.bincount(train_set.labels.numpy(), minlength=len(train_set.class_names))
    return {
        "command": "python -m model.train "
        + " ".join(
            f"--{k}={'none' if v is None else v}"
            for k, v in dataclasses.asdict(config).items()
            if v != getattr(TrainConfig, k, None) and k != "progress"
        ),
        "train_config": dataclasses.asdict(config),
        "data": {
            "dataset": dataset,
            "folder": root,
            "class_names": list(train_set.class_names),
            "train_maps_per_class": counts.tolist(),
            "train_maps": len(train_set),
            "validation_maps": len(val_set),
            "test_maps": len(test_set),
        },
        "fine_tuned_from": (
            None if source is None else source_summary(str(config.init_from), source)
        ),
        "processes": group.world_size,
        "device": str(group.device),
        "autocast": "bfloat16" if config.amp and group.device.type == "cuda" else None,
        "torch": torch.__version__,
    }


def _silent(*args: object, **kwargs: object) -> None:
    """``print`` on the processes other than rank 0."""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in args):
        fields = dataclasses.fields(TrainConfig)
        print(__doc__)
        for f in fields:
            print(f"  --{f.name}={f.default!r}")
        return 0
    try:
        config = apply_overrides(TrainConfig(), args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(dataclasses.asdict(config)), flush=True)
    print(f"checkpoint: {train(config)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
