"""One resumable training loop for a teacher, a student from scratch, and a distilled student.

``train(cfg)`` returns a `Run`. The run directory is keyed by the config's hash: asking twice for
the same run trains once. Each epoch ends with an atomic checkpoint (model, optimizer, scheduler,
loss modules, every RNG), so an interrupted run resumes where it stopped and, on the CPU, ends
bit-identical to an uninterrupted one. Under ``torchrun`` the student is wrapped in DDP (gloo on
CPU, nccl on GPU) and rank 0 alone logs and writes. bf16 autocast and channels-last on CUDA only.

Recipe (DeiT / the official code, docs/design.md §2): AdamW via timm's ``create_optimizer_v2`` (no
weight decay on norms and biases), timm's ``CosineLRScheduler`` stepped per epoch with linear
warm-up. Unlike DeiT, the schedule is applied at the start of each epoch, so the logged
``train_lr`` of epoch e is the scheduled lr(e) (the official logs lag it by one epoch).

Over 450 lines on purpose: the one resumable training loop with its checkpoint, evaluation and
logging, which must change together for resume to stay bit-identical.
"""
from __future__ import annotations

import logging
import math
import os
import pickle
import random
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from timm.optim import create_optimizer_v2
from timm.scheduler import CosineLRScheduler
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, default_collate
from tqdm.auto import tqdm

from ddkit.core.anatomy import input_size, num_blocks
from ddkit.core.config import (
    ConfigError,
    RunConfig,
    batch_plan,
    config_hash,
    from_dict,
    identity,
    replace,
    to_dict,
    validate,
    with_world_size,
)
from ddkit.core.data import build_dataset, dataset_info
from ddkit.core.device import resolve_device
from ddkit.core.losses import DistillationLoss, resolve_layer_pairs
from ddkit.core.mae import MaskedAutoencoder
from ddkit.core.models import check_patch_grid, create_from_config
from ddkit.runs.progress import emit
from ddkit.runs.store import (
    RunDir,
    RunFileError,
    make_dir,
    run_lock,
    runs_root,
    save_weights,
    torch_save,
)
from ddkit.runs.task import DistillationTask, MaeTask
from ddkit.runs.teacher_cache import IndexedDataset, TeacherOutputs, cache_key, load_or_compute
from ddkit.runs.tracking import Trackers

LOG_KEYS = ("train_lr", "train_loss", "train_loss_base", "train_loss_fft", "train_loss_dist",
            "test_loss", "test_acc1", "test_acc5", "epoch", "n_parameters")


log = logging.getLogger(__name__)   # cache hits and resumes; the CLI shows INFO lines


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or inf; the last good checkpoint is kept."""


# --------------------------------------------------------------------------- runs


@dataclass(frozen=True)
class Run:
    """A finished (or cached) run: its config, directory, log and weights."""
    config: RunConfig
    dir: RunDir

    @property
    def records(self) -> list[dict]:
        return self.dir.records()

    @property
    def summary(self) -> dict:
        return self.dir.read_summary()

    def history(self):
        """Per-epoch log as a pandas DataFrame (official keys)."""
        import pandas as pd  # lazy: ddkit.cli imports this module; pandas (~0.3 s) would slow `ddkit --help`
        return pd.DataFrame(self.records)

    def checkpoints(self) -> dict[int, Any]:
        """``{epoch: weights path}`` of the kept per-epoch weights."""
        return self.dir.kept_weights()

    def load_model(self, epoch: int | None = None, device: str | torch.device = "cpu"):
        """The trained model (final weights, or those kept at ``epoch``), in eval mode."""
        path = self.dir.final_weights if epoch is None else self.dir.epoch_weights(epoch)
        model = create_from_config(replace(self.config.model, pretrained=False), checkpoint=path)
        return model.to(device).eval()


def load_run(path) -> Run:
    """A run from its directory, with the config recorded there (RunFileError when the folder
    is not a run or its config.json is damaged)."""
    run_dir = RunDir(Path(path))
    data = run_dir.read_config()
    try:
        return Run(from_dict(RunConfig, data), run_dir)
    except ConfigError as err:
        raise RunFileError(f"{run_dir.config}: {err}{run_dir.fix}") from None


def find_run(cfg: RunConfig, root=None) -> Run | None:
    """The completed run for ``cfg`` if it exists (no training); its files are verified."""
    run_dir = RunDir.for_config(cfg, root)
    if not run_dir.is_complete:
        return None
    run_dir.verify()
    return Run(cfg, run_dir)


CHECKPOINT_FORMAT = 2   # tensors and plain numbers only: read with torch.load(weights_only=True)


def _read_checkpoint(run_dir: RunDir) -> dict | None:
    """The state an interrupted run resumes from (None when it has none), read on the CPU with
    ``weights_only=True``: a file holding anything but tensors and plain numbers (a resume file
    of an older ddkit, or a crafted one) is refused, never unpickled, since unpickling runs the
    code a pickle names (run stores are shared on clusters)."""
    path = run_dir.checkpoint
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        said = next((line.strip() for line in str(err).splitlines()
                     if "Unsupported" in line or "WeightsUnpickler" in line), "")
        raise RunFileError(f"{path}: not loaded: it holds more than tensors and plain numbers "
                           f"(a resume file of an older ddkit, or not written by ddkit), and "
                           f"reading it would unpickle code{f' ({said})' if said else ''}"
                           f"{run_dir.fix}") from None
    except Exception as err:  # zip and OS errors: "unreadable"
        raise RunFileError(f"{path}: unreadable checkpoint, truncated or corrupt "
                           f"({type(err).__name__}: {err}){run_dir.fix}") from None
    if not isinstance(state, dict):
        raise RunFileError(f"{path}: not a ddkit checkpoint (holds a {type(state).__name__})"
                           f"{run_dir.fix}")
    missing = {"trainable", "optimizer", "scheduler", "rng", "epoch", "elapsed"} - set(state)
    if missing:
        raise RunFileError(f"{path}: not a ddkit checkpoint (lacks "
                           f"{sorted(missing)}){run_dir.fix}")
    if state.get("format") != CHECKPOINT_FORMAT:
        raise RunFileError(f"{path}: not loaded: written in format {state.get('format')!r}, "
                           f"this ddkit reads format {CHECKPOINT_FORMAT}{run_dir.fix}")
    return state


def _resumed_records(run_dir: RunDir, start: int) -> list[dict]:
    """The log of epochs 0 .. start-1 a resumed run keeps; RunFileError (before any compute)
    when the log lacks one of them: finished, the run would hold fewer records than epochs."""
    records = [r for r in run_dir.records() if r.get("epoch", start) < start]
    logged = [r.get("epoch") for r in records]
    if logged != list(range(start)):
        raise RunFileError(f"{run_dir.log}: holds epochs {logged}, not epochs 0..{start - 1} "
                           f"that the run's checkpoint ({run_dir.checkpoint.name}) resumes after: "
                           f"finished, the run would lack their log{run_dir.fix}")
    return records


# --------------------------------------------------------------------------- set-up helpers


def _dist_env() -> tuple[int, int, int]:
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    """Every RNG's state as tensors and plain numbers (a weights-only checkpoint holds it)."""
    key, mt, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"key": key, "state": torch.from_numpy(mt.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
             "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64),
                        "gauss": gauss}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["key"], n["state"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


IN_MEMORY_BYTES = 1 << 30  # an un-augmented data set up to this size is held as one tensor


def _epoch_order(seed: int, epoch: int) -> torch.Generator:
    """The generator of the training order of one epoch."""
    return torch.Generator().manual_seed(seed * 100003 + epoch)


class TensorBatches:
    """An un-augmented map-style data set held as stacked tensors, batched by index.

    Yields exactly the batches of ``_loader``'s single-process DataLoader (same order from
    ``(seed, epoch)``, same items: each is read once through ``__getitem__`` and collated), without
    calling ``__getitem__`` and collating again every epoch. Making an iterator also draws the one
    number a DataLoader draws from torch's global RNG for its worker seed, so the RNG stream a
    checkpoint saves is the same as with the DataLoader.
    """

    def __init__(self, tensors: tuple[torch.Tensor, ...], batch_size: int, train: bool,
                 seed: int = 0, epoch: int = 0):
        self.tensors, self.batch_size, self.train = tensors, batch_size, train
        self.seed, self.epoch = seed, epoch

    @staticmethod
    def collate(dataset) -> tuple[torch.Tensor, ...] | None:
        """The whole data set as ``default_collate`` stacks it, or None when it would take more
        than ``IN_MEMORY_BYTES``."""
        n = len(dataset)
        first = default_collate([dataset[0]])
        if sum(t.element_size() * t.numel() for t in first) * n > IN_MEMORY_BYTES:
            return None
        return tuple(default_collate([dataset[i] for i in range(n)]))

    def at_epoch(self, epoch: int) -> "TensorBatches":
        return TensorBatches(self.tensors, self.batch_size, self.train, self.seed, epoch)

    def __len__(self) -> int:
        n = len(self.tensors[0])
        return n // self.batch_size if self.train else math.ceil(n / self.batch_size)

    def __iter__(self):
        # drawn when the iterator is made, as the DataLoader does (tqdm makes one it never reads)
        torch.empty((), dtype=torch.int64).random_()
        return self._batches()

    def _batches(self):
        n = len(self.tensors[0])
        if self.train:  # RandomSampler's order: one permutation from the (seed, epoch) generator
            order = torch.randperm(n, generator=_epoch_order(self.seed, self.epoch))
        else:
            order = torch.arange(n)
        for i in range(len(self)):
            index = order[i * self.batch_size:(i + 1) * self.batch_size]
            yield [t[index] for t in self.tensors]


def _loader(dataset, batch_size: int, train: bool, seed: int, epoch: int, world: int, rank: int,
            num_workers: int, pin: bool) -> DataLoader | TensorBatches:
    """Training order depends only on (seed, epoch), so a resumed epoch sees the same batches.

    ``dataset`` may be a ``TensorBatches`` (an un-augmented set held in memory, single process):
    it is returned for this epoch, with the batches the DataLoader below would give.
    """
    if isinstance(dataset, TensorBatches):
        return dataset.at_epoch(epoch)
    if world > 1:
        sampler = DistributedSampler(dataset, world, rank, shuffle=train, seed=seed,
                                     drop_last=train)
        sampler.set_epoch(epoch)
    elif train:
        sampler = RandomSampler(dataset, generator=_epoch_order(seed, epoch))
    else:
        sampler = None
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=train,
                      num_workers=num_workers, pin_memory=pin)


def _in_memory(dataset, batch_size: int, train: bool, seed: int):
    """``dataset`` as a ``TensorBatches`` when it fits in ``IN_MEMORY_BYTES``, else unchanged."""
    tensors = TensorBatches.collate(dataset)
    return dataset if tensors is None else TensorBatches(tensors, batch_size, train, seed)


def _freeze_all_but_head(model: torch.nn.Module) -> None:
    """A linear probe (``optim.trainable: head``): only the classifier head trains."""
    head = model.get_classifier()
    model.requires_grad_(False)
    head.requires_grad_(True)


def build_task(cfg: RunConfig, device: torch.device) -> tuple[DistillationTask | MaeTask, int]:
    m, d = cfg.model, cfg.distill
    student = create_from_config(m)
    if cfg.optim.trainable == "head":
        _freeze_all_but_head(student)
    if cfg.mae is not None:
        a = cfg.mae
        mae = MaskedAutoencoder(student, a.mask_ratio, a.decoder_dim, a.decoder_depth,
                                a.decoder_heads, a.norm_pix_loss)
        return MaeTask(mae).to(device), sum(p.numel() for p in student.parameters())
    teacher, pairs = None, []
    if cfg.uses_teacher:
        t = d.teacher
        teacher = create_from_config(t)
        if d.feature != "none":
            pairs = resolve_layer_pairs(d.layers, num_blocks(student), num_blocks(teacher))
    criterion = DistillationLoss(
        kd=d.kd, alpha=d.alpha, tau=d.tau, feature=d.feature, layer_pairs=pairs,
        feature_weight=d.feature_weight, label_smoothing=cfg.optim.label_smoothing,
        student_dims=getattr(student, "block_widths", None) or getattr(student, "embed_dim", None),
        teacher_dims=getattr(teacher, "embed_dim", None), projector_mode=d.projector_mode,
        feature_until=d.feature_until, target_rank=d.target_rank, feature_norm=d.feature_norm)
    n_parameters = sum(p.numel() for p in student.parameters())
    task = DistillationTask(student, criterion, teacher, pairs).to(device)
    if device.type == "cuda" and cfg.channels_last:
        task.to(memory_format=torch.channels_last)
    return task, n_parameters


def _autocast(cfg: RunConfig, device: torch.device):
    if device.type == "cuda" and cfg.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


def _all_reduce_sum(values: torch.Tensor, world: int) -> torch.Tensor:
    if world > 1:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


# --------------------------------------------------------------------------- epochs


def train_step(task: DistillationTask, optimizer, x: torch.Tensor, y: torch.Tensor,
               cfg: RunConfig, device: torch.device, where: str = "",
               teacher_out: tuple | None = None, micro: int = 0,
               accum: int = 1) -> dict[str, torch.Tensor]:
    """One micro-batch: forward and backward, and the optimizer step on the last of ``accum``
    accumulated micro-batches (``micro`` counts from 0; ``accum=1``: every call is one whole
    step). Returns the detached loss parts (float32 scalars). Under DDP the gradients are
    all-reduced only on the stepping micro-batch.

    A NaN/inf loss raises NonFiniteLossError before the optimizer touches the weights.
    """
    stepping = micro == accum - 1
    module = task.trainable_module
    sync = nullcontext() if stepping or not hasattr(module, "no_sync") else module.no_sync()
    with sync:
        with _autocast(cfg, device):
            parts = task(x, y, teacher_out)
        loss = parts["loss"]
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            shown = {k: float(v.detach()) for k, v in parts.items() if k != "output"}
            raise NonFiniteLossError(
                f"{where}: non-finite loss {loss_value} (parts {shown}); the last good checkpoint "
                "is kept. Lower optim.lr, set optim.clip_grad, or check the data.")
        if micro == 0:
            optimizer.zero_grad(set_to_none=True)
        (loss if accum == 1 else loss / accum).backward()
    if stepping:
        if cfg.optim.clip_grad:
            torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.optim.clip_grad)
        optimizer.step()
    return {k: v.detach().float() for k, v in parts.items() if k != "output"}


def _train_epoch(task, loader, optimizer, scheduler, cfg, device, epoch, world, show,
                 teacher_cache: TeacherOutputs | None = None) -> dict[str, float]:
    task.train()
    sums: dict[str, torch.Tensor] = {}
    steps = 0
    accum = batch_plan(cfg).accum
    per_epoch = len(loader) // accum          # optimizer steps; a last partial group is dropped
    bar = tqdm(loader, desc=f"{cfg.name} epoch {epoch + 1}/{cfg.optim.epochs}", leave=False,
               disable=not show, dynamic_ncols=True)
    for x, y, *index in bar:
        if steps >= per_epoch * accum:
            break
        done = steps // accum                 # optimizer steps taken this epoch
        if cfg.optim.sched_per_step and steps % accum == 0:
            scheduler.step_update(epoch * per_epoch + done)
        task.set_progress((epoch * per_epoch + done) / (cfg.optim.epochs * per_epoch))
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        teacher_out = (teacher_cache.lookup(index[0], task.teacher_layers, device)
                       if teacher_cache is not None else None)
        if device.type == "cuda" and cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        parts = train_step(task, optimizer, x, y, cfg, device,
                           where=f"{cfg.name}, epoch {epoch}, step {steps}",
                           teacher_out=teacher_out, micro=steps % accum, accum=accum)
        for key, value in parts.items():
            sums[key] = sums.get(key, 0.0) + value
        steps += 1
        if show and steps % 20 == 0:
            bar.set_postfix(loss=f"{parts['loss'].item():.3f}")
    keys = sorted(sums)
    totals = _all_reduce_sum(torch.stack([sums[k] for k in keys] + [torch.tensor(float(steps), device=device)]), world)
    return {k: (totals[i] / totals[-1]).item() for i, k in enumerate(keys)}


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, device: torch.device, world: int = 1,
             autocast=nullcontext) -> dict[str, float]:
    """Test loss (plain CE, mean over images) and top-1/top-5 accuracy in percent."""
    model.eval()
    stats = torch.zeros(4, device=device, dtype=torch.float64)  # loss sum, top1, top5, count
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        with autocast():
            logits = model(x).float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices   # [B, 5]
        hits = top.eq(y[:, None])
        stats += torch.stack([torch.nn.functional.cross_entropy(logits, y, reduction="sum"),
                              hits[:, 0].sum(), hits.any(1).sum(),
                              torch.tensor(len(y), device=device)]).double()
    stats = _all_reduce_sum(stats, world)
    n = stats[3].item()
    return {"test_loss": stats[0].item() / n, "test_acc1": 100 * stats[1].item() / n,
            "test_acc5": 100 * stats[2].item() / n}


@torch.no_grad()
def _pooled(encoder: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The encoder's pre-logits features (what its head would read), L2-normalised: [B, C]."""
    feats = encoder.forward_head(encoder.forward_features(x), pre_logits=True)
    return torch.nn.functional.normalize(feats.float(), dim=1)


@torch.no_grad()
def evaluate_mae(task: MaeTask, loader, bank_loader, device: torch.device, k: int = 20,
                 temperature: float = 0.07) -> dict[str, float]:
    """A masked autoencoder's test reconstruction loss (``test_loss``: masks drawn from a fixed
    generator, the same every epoch) and the weighted k-nearest-neighbour top-1/top-5 of its
    pre-logits features against ``bank_loader``'s labelled training images (cosine similarity,
    votes weighted by exp(similarity / temperature), as DINO's monitor): the labels are read
    only here, never in training."""
    task.eval()
    mae, encoder = _unwrap(task.trainable_module), task.student
    bank = [(_pooled(encoder, x.to(device)), y.to(device)) for x, y in bank_loader]
    bank_x, bank_y = torch.cat([b[0] for b in bank]), torch.cat([b[1] for b in bank])
    classes = int(bank_y.max()) + 1
    generator = torch.Generator(device).manual_seed(0)
    loss_sum, hits1, hits5, n = 0.0, 0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss_sum += mae(x, generator)["loss"].item() * len(y)
        sim, index = (_pooled(encoder, x) @ bank_x.T).topk(k, dim=1)          # [B, k]
        votes = torch.zeros(len(y), classes, device=device)
        votes.scatter_add_(1, bank_y[index], (sim / temperature).exp())
        top = votes.topk(min(5, classes), dim=1).indices
        hits1 += int(top[:, 0].eq(y).sum())
        hits5 += int(top.eq(y[:, None]).any(1).sum())
        n += len(y)
    return {"test_loss": loss_sum / n, "test_acc1": 100 * hits1 / n, "test_acc5": 100 * hits5 / n}


def _scheduler(optimizer, cfg: RunConfig, steps_per_epoch: int) -> CosineLRScheduler:
    """Warm-up then cosine to min_lr, in epochs (official) or in steps (sched_per_step)."""
    o = cfg.optim
    unit = max(steps_per_epoch, 1) if o.sched_per_step else 1
    return CosineLRScheduler(optimizer, t_initial=o.epochs * unit, lr_min=o.min_lr,
                             warmup_t=o.warmup_epochs * unit, warmup_lr_init=o.warmup_lr,
                             t_in_epochs=not o.sched_per_step)


def _shared_teacher_pass(cfg: RunConfig, task: DistillationTask, train_set, device, root,
                         show: bool) -> TeacherOutputs:
    """The teacher's outputs over the (un-augmented) training set, computed once per teacher,
    training set and block list, and shared by every student run that asks for them."""
    d = cfg.data
    data_identity = {"name": d.name, "root": d.root, "subset": d.train_subset,
                     "img_size": d.img_size, "seed": cfg.seed}
    key = cache_key(identity(to_dict(cfg.distill.teacher)), data_identity, task.teacher_layers)
    path = (root or runs_root()) / "teacher-cache" / f"{key}.pt"
    return load_or_compute(path, task.teacher, train_set, task.teacher_layers, device, show)


# --------------------------------------------------------------------------- the loop


def _cache_hit(cfg: RunConfig, run_dir: RunDir) -> Run:
    run_dir.verify()
    summary = run_dir.read_summary()
    log.info("cache hit: %s (trained before: %d epochs, final top-1 %.2f %%)",
             run_dir.path, summary["epochs"], summary["final_acc1"])
    emit("run_done", run=run_dir.path.name, acc1=summary["final_acc1"],
         wall_s=summary["wall_time_s"], cached=True)
    return Run(cfg, run_dir)


def train(cfg: RunConfig, progress: bool = True, root=None, wait: bool = True) -> Run:
    """Train ``cfg`` (or return the cached run). Resumes from the run's last checkpoint.

    One process trains a run at a time (``store.run_lock``): a second waits and then takes the
    cache hit, or with ``wait=False`` raises RunBusyError.

    Under torchrun a config left at ``world_size: 1`` takes the launch's world size, which is
    part of the run's identity (``config.with_world_size``): the same recipe on another number
    of processes is another run."""
    rank, world, local_rank = _dist_env()
    if not (world == 1 and cfg.world_size > 1):   # read as planned: a finished DDP run is a
        cfg = with_world_size(cfg, world)         # cache hit in a single process too
    validate(cfg)
    run_dir = RunDir.for_config(cfg, root)
    if run_dir.is_complete:
        return _cache_hit(cfg, run_dir)
    with_world_size(cfg, world)           # a run planned for N processes needs N to train
    with run_lock(run_dir, wait) if rank == 0 else nullcontext():
        if run_dir.is_complete:           # finished by the process this one waited for
            return _cache_hit(cfg, run_dir)
        created = not run_dir.path.exists()
        try:
            return _train_run(cfg, run_dir, progress, root, rank, world, local_rank)
        except BaseException:
            if created and rank == 0 and not run_dir.log.exists():
                shutil.rmtree(run_dir.path, ignore_errors=True)   # nothing was computed
            raise


FIT_IMAGES = 4096   # training images whose teacher tokens fit a TopPCKD basis


def _fit_feature_targets(cfg: RunConfig, task, train_set, teacher_cache, device) -> None:
    """Fit the loss modules that need the teacher's features (TopPCKD) on the first
    ``FIT_IMAGES`` training images, un-augmented: from the shared teacher pass when there is one,
    else by a teacher forward. Skipped on resume (the fitted buffers come with the checkpoint)."""
    if not getattr(getattr(task, "criterion", None), "needs_fit", False):
        return
    n = min(FIT_IMAGES, len(train_set))
    if teacher_cache is not None:
        task.fit_feature_targets(feats={b: f[:n] for b, f in teacher_cache.feats.items()})
        return
    d = cfg.data
    plain = build_dataset(d.name, "train", root=d.root, img_size=d.img_size,
                          subset=d.train_subset, seed=cfg.seed, augment=False)
    images = torch.stack([plain[i][0] for i in range(n)]).to(device)
    task.fit_feature_targets(images=images)


def _check_classes(cfg: RunConfig, task) -> None:
    """The data set's labels index into every model's logits, and a teacher's logits have the
    student's classes (before any compute)."""
    known = cfg.data.name != "imagefolder" or cfg.data.root is not None
    k = dataset_info(cfg.data.name, cfg.data.root)["num_classes"] if known else None
    student = getattr(task.student, "num_classes", None)
    teacher = getattr(getattr(task, "teacher", None), "num_classes", None)
    for role, n in (("model", student), ("distill.teacher", teacher)):
        if n is not None and k is not None and n != k:
            raise ConfigError(f"{role} has {n} classes, data set {cfg.data.name!r} has {k}: set "
                              f"{role}.kwargs.num_classes={k} or pick the matching data.name")
    if student is not None and teacher is not None and student != teacher:
        raise ConfigError(f"the teacher has {teacher} classes, the student {student}: "
                          "distillation needs the same classes")


def _check_image_size(cfg: RunConfig, task) -> None:
    """The data's image size splits into whole patches of every model, and fits a model built
    for a fixed size (before any compute)."""
    size = cfg.data.img_size
    if size is None:
        return
    for role, model in (("model", task.student), ("distill.teacher", getattr(task, "teacher", None))):
        embed = getattr(model, "patch_embed", None)
        if embed is None:
            continue
        try:
            check_patch_grid(embed, size, "data.img_size")
        except ValueError as err:
            raise ConfigError(str(err)) from None
        built = input_size(model)
        if built != size and not getattr(embed, "dynamic_img_size", False):
            raise ConfigError(f"data.img_size={size}: {role} is built for {built} px images; "
                              f"set {role}.kwargs.img_size={size} or data.img_size={built}")


def _train_run(cfg: RunConfig, run_dir: RunDir, progress: bool, root, rank: int, world: int,
               local_rank: int) -> Run:
    if run_dir.config.exists():
        run_dir.read_config()             # a damaged config.json is named, never rewritten
    state = _read_checkpoint(run_dir)      # a damaged checkpoint stops here, before any compute
    start, records, elapsed = 0, [], 0.0
    if state is not None:                  # and so does a log that lacks a finished epoch
        start, elapsed = state["epoch"] + 1, state["elapsed"]
        records = _resumed_records(run_dir, start)

    device = resolve_device(cfg.device, local_rank)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    show = progress and rank == 0

    _seed_all(cfg.seed)
    data = cfg.data
    train_set = build_dataset(data.name, "train", root=data.root, img_size=data.img_size,
                              subset=data.train_subset, seed=cfg.seed, augment=data.augment)
    eval_set = build_dataset(data.name, "test", root=data.root, img_size=data.img_size,
                             subset=data.eval_subset, seed=cfg.seed, augment=False)
    task, n_parameters = build_task(cfg, device)
    _check_classes(cfg, task)
    _check_image_size(cfg, task)
    bank_loader = None
    if cfg.mae is not None:
        bank_set = build_dataset(data.name, "train", root=data.root, img_size=data.img_size,
                                 subset=min(cfg.mae.knn_bank, len(train_set)), seed=cfg.seed)
        bank_loader = _in_memory(bank_set, data.eval_batch_size, False, cfg.seed)
    plan = batch_plan(cfg)
    steps_per_epoch = ((len(train_set) // world) // data.batch_size) // plan.accum
    if steps_per_epoch == 0:
        raise ConfigError(f"{len(train_set)} training images give no optimizer step per epoch "
                          f"at a global batch of {plan.global_batch} ({plan.line()}): lower "
                          "data.batch_size or optim.global_batch, or train on more images")
    optimizer = create_optimizer_v2(task.trainable_module, "adamw", lr=plan.lr,
                                    weight_decay=cfg.optim.weight_decay)
    scheduler = _scheduler(optimizer, cfg, steps_per_epoch=steps_per_epoch)

    if state is not None:
        task.trainable_module.load_state_dict(state["trainable"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        if rank == 0:
            log.info("resuming %s from epoch %d of %d", run_dir.path, start, cfg.optim.epochs)
        del state
    if world > 1:
        task.prepare_distributed(device_ids=[local_rank] if device.type == "cuda" else None)
    if rank == 0:
        make_dir(run_dir.path)
        run_dir.write_config(cfg)

    trackers = None
    if rank == 0:
        log.info("%s: %s", run_dir.path.name, plan.line())
        emit("run_start", run=run_dir.path.name, epochs=cfg.optim.epochs,
                      resumed_from=start, global_batch=plan.global_batch, lr=plan.lr)
        trackers = Trackers(run_dir.path, cfg.name, to_dict(cfg), cfg.tensorboard, cfg.wandb,
                            start_epoch=start)
    try:
        return _epochs(cfg, run_dir, task, optimizer, scheduler, plan, train_set, eval_set,
                       bank_loader, records, start, elapsed, n_parameters, device, rank, world,
                       show, root, trackers)
    finally:
        if trackers is not None:
            trackers.close()


def _epochs(cfg, run_dir, task, optimizer, scheduler, plan, train_set, eval_set, bank_loader,
            records, start, elapsed, n_parameters, device, rank, world, show, root,
            trackers) -> Run:
    """The epochs of ``_train_run`` from ``start``, then the final weights and summary."""
    data = cfg.data
    teacher_cache = None
    if cfg.uses_teacher and cfg.share_teacher_pass and not data.augment and world == 1:
        teacher_cache = _shared_teacher_pass(cfg, task, train_set, device, root, show)
        train_set = IndexedDataset(train_set)

    _fit_feature_targets(cfg, task, train_set, teacher_cache, device)
    pin = device.type == "cuda"
    if world == 1 and data.num_workers == 0:  # small un-augmented sets: one tensor, no DataLoader
        if not data.augment:
            train_set = _in_memory(train_set, data.batch_size, True, cfg.seed)
        eval_set = _in_memory(eval_set, data.eval_batch_size, False, cfg.seed)
    eval_loader = _loader(eval_set, data.eval_batch_size, False, cfg.seed, 0, world, rank,
                          data.num_workers, pin)
    epochs = tqdm(range(start, cfg.optim.epochs), desc=cfg.name, initial=start,
                  total=cfg.optim.epochs, disable=not show, dynamic_ncols=True)
    for epoch in epochs:
        began = time.perf_counter()
        if not cfg.optim.sched_per_step:
            scheduler.step(epoch)
        loader = _loader(train_set, data.batch_size, True, cfg.seed, epoch, world, rank,
                         data.num_workers, pin)
        losses = _train_epoch(task, loader, optimizer, scheduler, cfg, device, epoch, world, show,
                              teacher_cache)
        if cfg.mae is not None:
            tested = evaluate_mae(task, eval_loader, _loader(bank_loader, data.eval_batch_size,
                                  False, cfg.seed, 0, 1, 0, 0, pin), device)
        else:
            tested = evaluate(task.student, eval_loader, device, world,
                              lambda: _autocast(cfg, device))
        elapsed += time.perf_counter() - began
        record = {"train_lr": optimizer.param_groups[0]["lr"],
                  **{f"train_{k}": v for k, v in losses.items()}, **tested,
                  "epoch": epoch, "n_parameters": n_parameters, "elapsed_s": round(elapsed, 2)}
        records.append(record)
        epochs.set_postfix(acc1=f"{tested['test_acc1']:.2f}")
        if trackers is not None:
            trackers.log(record)
        if rank == 0:
            emit("epoch", run=run_dir.path.name, epoch=epoch + 1,
                          epochs=cfg.optim.epochs, acc1=tested["test_acc1"],
                          elapsed_s=round(elapsed, 1))
            last = epoch == cfg.optim.epochs - 1
            if last or (cfg.save_every and (epoch + 1) % cfg.save_every == 0):
                save_weights(run_dir.epoch_weights(epoch), task.student.state_dict())
            run_dir.write_log(records)
            torch_save(run_dir.checkpoint, {
                "trainable": _unwrap(task.trainable_module).state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": _rng_state(), "epoch": epoch, "elapsed": elapsed,
                "format": CHECKPOINT_FORMAT})
        if world > 1:
            dist.barrier()

    if rank == 0:
        save_weights(run_dir.final_weights, task.student.state_dict())
        best = max(records, key=lambda r: r["test_acc1"])
        run_dir.write_summary({
            "name": cfg.name, "hash": config_hash(cfg), "epochs": cfg.optim.epochs,
            "final_acc1": records[-1]["test_acc1"], "best_acc1": best["test_acc1"],
            "best_epoch": best["epoch"], "wall_time_s": round(elapsed, 1),
            "n_parameters": n_parameters, "device": str(device), "world_size": world,
            "global_batch": plan.global_batch, "grad_accum_steps": plan.accum, "lr": plan.lr,
            "torch": torch.__version__, "config": to_dict(cfg)})
        emit("run_done", run=run_dir.path.name, acc1=records[-1]["test_acc1"],
                      wall_s=round(elapsed, 1), cached=False)
    if world > 1:
        dist.barrier()
    return Run(cfg, run_dir)


def _unwrap(module: torch.nn.Module) -> torch.nn.Module:
    return getattr(module, "module", module)
