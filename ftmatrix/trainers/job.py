"""One job: `main(job_dir)` reads config.json, trains, evaluates, writes its result.

Reads top to bottom, in `train`: data -> model (+ LoRA, + teacher) -> loss, optimizer,
schedule (`_prepare`) -> resume from the last checkpoint (`_resume`) -> epochs, with
early stopping and best weights (`_epochs`) -> test with the weights of the epoch
`train.test` names (selection.py), then weights/ and predictions.npz (`_test`) ->
result.json, last and atomically, and checkpoint/ removed unless kept (`_run`).

Exit status: 0 done; 1 failed (result.json says why: oom, nan_loss, data_error,
config_error, crash); 130/143 after SIGINT/SIGTERM, with no result.json, so the runner
records the job as interrupted and the next run resumes from the checkpoint.

Testing hook: the environment variable FTMATRIX_FAULT injects a fault at the start of
epoch E (1-based): `raise@E` raises (a crash), `nan@E` makes that epoch's loss NaN,
`sleep@E` hangs (for timeout and Ctrl-C tests), `exit@E` dies with os._exit(1) and no
result. Every start of the process appends a line to starts.log.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ftmatrix import __version__
from ftmatrix.config import JobConfig
from ftmatrix.result import (
    CHECKPOINT,
    CONFIG,
    METRICS,
    PREDICTIONS,
    PROGRESS,
    RESULT,
    WEIGHTS,
    EpochMetrics,
    Result,
    log_tail,
    write_atomic,
    write_json_atomic,
)
from ftmatrix.trainers import (
    augment,
    checkpoint,
    compute,
    data,
    distill,
    loop,
    losses,
    metrics,
    models,
    optim,
    peft_methods,
    selection,
    sft_job,
)
from ftmatrix.trainers import own as own_code
from ftmatrix.trainers.models import ConfigError


class Progress:
    """The machine-readable channel (progress.jsonl) plus human lines on stdout."""

    def __init__(self, job_dir: Path):
        self.path = job_dir / PROGRESS

    def emit(self, event: str, **fields) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"event": event, "time": time.time(), **fields}) + "\n")

    def say(self, text: str) -> None:
        print(text, flush=True)


class Stop:
    """SIGINT/SIGTERM set a flag; the loop checks it between steps. A context manager:
    the previous handlers come back when the job ends (main called in-process)."""

    def __init__(self):
        self.signum: int | None = None
        self.previous: dict[int, object] = {}

    def __enter__(self) -> Stop:
        if threading.current_thread() is threading.main_thread():  # signals need it
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._set)
        return self

    def __exit__(self, *_exc) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _set(self, signum, _frame) -> None:
        self.signum = signum

    def check(self) -> None:
        if self.signum is not None:
            raise loop.Interrupted(self.signum)


def fault(epoch: int | str, stop: Stop, job_id: str = "") -> bool:
    """Apply FTMATRIX_FAULT for this epoch; True when the epoch's loss must be NaN.

    The variable holds comma-separated `kind@EPOCH` entries, each optionally limited to
    one job with `:JOB_ID` (so a whole matrix can run with one job made to fail).
    `@result` instead of an epoch number: the moment before result.json is written."""
    for entry in filter(None, os.environ.get("FTMATRIX_FAULT", "").split(",")):
        spec, _, only = entry.partition(":")
        kind, _, at = spec.partition("@")
        if not at or at != str(epoch) or (only and only != job_id):
            continue
        if kind == "raise":
            raise RuntimeError(f"injected fault at epoch {epoch}")
        if kind == "exit":
            os._exit(1)
        if kind == "sleep":
            while True:
                stop.check()
                time.sleep(0.05)
        if kind == "nan":
            return True
    return False


def main(job_dir: str | Path) -> int:
    """Run the job in `job_dir`; the process exit status (0 done, 1 failed, 128+signal)."""
    if own_code.handles(Path(job_dir)):  # a script: or function: job
        return own_code.main(Path(job_dir).resolve())
    with Stop() as stop:
        return _run(Path(job_dir).resolve(), stop)


def _run(job_dir: Path, stop: Stop) -> int:
    started = time.time()
    progress = Progress(job_dir)
    result = Result(status="failed", job_id=job_dir.name, started_at=_now())
    try:
        cfg = JobConfig.model_validate_json((job_dir / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return _fail(job_dir, result, "config_error", f"cannot read {CONFIG}: {err}", progress)
    try:
        train(cfg, job_dir=job_dir, result=result, progress=progress, stop=stop)
        fault("result", stop, job_dir.name)
    except loop.Interrupted as err:
        progress.emit("end", status="interrupted")
        progress.say(f"interrupted by signal {err.signum}; the checkpoint is kept")
        return 128 + err.signum
    except loop.NanLoss as err:
        return _fail(job_dir, result, "nan_loss", str(err), progress)
    except data.DataError as err:
        return _fail(job_dir, result, "data_error", str(err), progress)
    except ConfigError as err:
        return _fail(job_dir, result, "config_error", str(err), progress)
    except (torch.OutOfMemoryError, MemoryError) as err:
        return _fail(job_dir, result, "oom", f"out of memory: {err}", progress)
    except Exception as err:
        traceback.print_exc()
        # MPS and some CUDA paths report memory exhaustion as a plain RuntimeError
        error = "oom" if "out of memory" in str(err).lower() else "crash"
        return _fail(job_dir, result, error, f"{type(err).__name__}: {err}", progress)
    result.status = "done"
    result.timing["total"] = time.time() - started
    result.finished_at = _now()
    write_json_atomic(job_dir / RESULT, result.model_dump(mode="json"))
    if not cfg.output.keep_checkpoint:  # only a resume needed it; the job is done
        shutil.rmtree(job_dir / CHECKPOINT, ignore_errors=True)
    progress.emit("end", status="done")
    return 0


def _fail(job_dir: Path, result: Result, error: str, message: str, progress: Progress) -> int:
    progress.say(f"FAILED ({error}): {message}")
    sys.stdout.flush()
    result.status = "failed"
    result.error_class = error
    result.error_message = message
    result.log_tail = log_tail(job_dir)
    result.finished_at = _now()
    write_json_atomic(job_dir / RESULT, result.model_dump(mode="json"))
    progress.emit("end", status="failed", error_class=error)
    return 1


def train(cfg: JobConfig, *, job_dir: Path, result: Result, progress: Progress, stop: Stop) -> None:
    """Train and test the job, filling `result` (the caller writes it)."""
    if cfg.task == "causal-lm":  # instruction fine-tuning: its own loop
        result.versions = _versions()
        return sft_job.train(
            cfg, job_dir=job_dir, result=result, progress=progress, stop=stop, fault=fault
        )
    t0 = time.time()
    device = compute.device(cfg.train.device)
    autocast = compute.autocast(cfg.train.precision, device)
    compute.tune_kernels(device)
    result.device = compute.describe(device)
    result.precision = compute.precision_name(autocast)
    result.versions = _versions()
    state = checkpoint.load(job_dir / CHECKPOINT)
    start_epoch = checkpoint.begin(job_dir, state, seed=cfg.train.seed)

    parts = _prepare(
        cfg, job_dir=job_dir, device=device, autocast=autocast, progress=progress, stop=stop
    )
    result.params = models.params_record(parts.model)
    trackers, history = _resume(parts, state=state, result=result)
    result.timing["setup"] = time.time() - t0

    stopped_early = _epochs(parts, start=start_epoch, trackers=trackers, history=history)
    result.timing["train"] = sum(m.seconds for m in history)
    result.timing["per_epoch"] = result.timing["train"] / max(len(history), 1)

    rule = selection.picking_rule(cfg.train)
    best_epoch = trackers["best"]["epoch"] if rule is not None else None
    result.tested_epoch, result.tested_by = selection.tested(rule, best_epoch, history[-1].epoch)
    result.unranked_epochs = selection.unranked(history, rule)
    t_eval = time.time()
    result.test = _test(parts, epoch=best_epoch if result.tested_epoch == best_epoch else None)
    result.timing["eval"] = time.time() - t_eval
    result.adapter_bytes = peft_methods.adapter_bytes(job_dir / WEIGHTS)
    result.peak_memory_bytes = peft_methods.peak_memory(device)
    result.best_epoch = best_epoch
    result.epochs_run = len(history)
    result.stopped_early = stopped_early
    progress.say(
        f"test accuracy {result.test.accuracy:.4f}, macro F1 {result.test.f1_macro:.4f} "
        f"(epoch {result.tested_epoch}: {result.tested_by})"
    )


# ------------------------------------------------------------ before the epochs


@dataclass
class Parts:
    """Everything a job trains with, made once before its first epoch."""

    cfg: JobConfig
    job_dir: Path
    device: torch.device
    autocast: torch.dtype | None  # bf16/fp16 autocast, or None for fp32
    progress: Progress
    stop: Stop
    splits: data.Splits
    built: models.Built
    model: torch.nn.Module  # what is saved: the peft model under LoRA
    forward: torch.nn.Module  # what runs the batches: `model`, compiled if asked
    hard_loss: Callable  # the configured loss on the labels
    loss_fn: Callable  # what training minimises: + the teacher's soft targets
    optimizer: torch.optim.Optimizer
    schedule: optim.Schedule
    scaler: torch.amp.GradScaler | None  # fp16 only
    inputs: loop.Inputs  # validation and test batches
    train_inputs: loop.Inputs  # training batches (augmented on the device)

    @property
    def checkpoints(self) -> Path:
        return self.job_dir / CHECKPOINT


def _prepare(
    cfg: JobConfig,
    *,
    job_dir: Path,
    device: torch.device,
    autocast: torch.dtype | None,
    progress: Progress,
    stop: Stop,
) -> Parts:
    """Data, model, loss, optimizer and schedule, on `device`."""
    spec = cfg.train
    splits = data.load(
        cfg, tokenizer=models.tokenizer(cfg), cache_dir=data.cache.default_dir(job_dir)
    )
    if len(splits.test) == 0:  # before training, not after it
        raise data.DataError("the test split is empty (data.test_fraction is 0 and no test/)")
    classes = splits.class_names
    checkpoint.seed_everything(spec.seed)  # the same initial weights whatever the data loading drew
    built = models.build(cfg, len(classes), classes)
    model = built.model
    if cfg.lora.enabled:  # LoRA or another method (peft_methods.py)
        steps = -(-len(splits.train) // spec.batch_size) * spec.epochs // spec.grad_accumulation
        model = peft_methods.wrap(
            model, cfg.lora, head=built.head, total_steps=steps, task=cfg.task
        )
    model.to(device)
    if device.type == "cuda" and built.source == "torchvision":
        model = model.to(memory_format=torch.channels_last)
    teacher = None
    if cfg.distill.enabled:
        teacher = distill.teacher(
            cfg.distill, job_dir=job_dir, cfg=cfg, student=built, class_names=classes
        )
        teacher.model.to(device)

    weights = losses.class_weights(spec.loss, splits.train.y, len(classes))
    hard_loss = losses.build(spec.loss, weights=weights, num_classes=len(classes))

    def loss_fn(out, y, x):
        hard = hard_loss(out, y)
        if teacher is None or x is None:
            return hard
        soft = teacher.logits(x)
        return distill.loss(
            out, soft, hard, temperature=cfg.distill.temperature, alpha=cfg.distill.alpha
        )

    optimizer = optim.build_optimizer(spec, model, device=device.type)
    peft_methods.after_steps(model, optimizer)  # AdaLoRA's rank allocation
    inputs = loop.Inputs(built, device, splits.kind)
    train_inputs = inputs
    if splits.kind == "image" and cfg.data.augment.enabled and cfg.data.factory is None:
        # on the uint8 training batches, on the device: the loader only slices them
        transform = augment.BatchAugment(cfg.data.augment, cfg.model.image_size)
        train_inputs = loop.Inputs(built, device, splits.kind, transform=transform)
    # augmented training batches stay uint8 until the device: only val and test are
    # stored normalised
    held = (
        (splits.val, splits.test)
        if train_inputs.transform
        else (splits.train, splits.val, splits.test)
    )
    for split in held:
        inputs.normalize_once(split)
    return Parts(
        cfg=cfg,
        job_dir=job_dir,
        device=device,
        autocast=autocast,
        progress=progress,
        stop=stop,
        splits=splits,
        built=built,
        model=model,
        forward=torch.compile(model) if spec.compile else model,
        hard_loss=hard_loss,
        loss_fn=loss_fn,
        optimizer=optimizer,
        schedule=optim.Schedule(spec, optimizer, n_train=len(splits.train)),
        scaler=torch.amp.GradScaler(device.type) if autocast == torch.float16 else None,
        inputs=inputs,
        train_inputs=train_inputs,
    )


def _resume(p: Parts, *, state: dict | None, result: Result) -> tuple[dict, list[EpochMetrics]]:
    """(the epoch trackers, metrics of the epochs done): from the checkpoint when there
    is one, which also restores the model, optimizer, schedule and RNGs. Trackers:
    "best" ranks epochs for the test, "stopper" for early stopping (selection.py)."""
    trackers = {"best": selection.fresh(), "stopper": selection.fresh()}
    history: list[EpochMetrics] = []
    if state:
        checkpoint.load_model_state(p.model, state["model"])
        p.optimizer.load_state_dict(state["optimizer"])
        p.schedule.load_state_dict(state["scheduler"])
        if p.scaler and state.get("scaler"):
            p.scaler.load_state_dict(state["scaler"])
        checkpoint.set_rng_state(state["rng"])
        # a checkpoint written before "stopper" existed tracked one rule for both
        trackers = {
            "best": dict(state["best"]),
            "stopper": dict(state.get("stopper", state["best"])),
        }
        history = [EpochMetrics.model_validate(m) for m in state["history"]]
        result.resumed_from_epoch = state["epoch"]
        p.progress.say(f"resuming after epoch {state['epoch']}")
    # metrics.jsonl holds exactly the checkpointed epochs (drops a killed epoch's line)
    write_atomic(p.job_dir / METRICS, "".join(m.model_dump_json() + "\n" for m in history))
    return trackers, history


def splits_of(splits: data.Splits) -> list[data.Split]:
    return [splits.train, splits.val, splits.test]


# ------------------------------------------------------------------- the epochs


def _epochs(p: Parts, *, start: int, trackers: dict, history: list[EpochMetrics]) -> bool:
    """Train from epoch `start` to the last, keeping the best weights (when the test
    wants the best epoch) and a checkpoint after each; True when early stopping ended
    it before the last epoch."""
    spec, es = p.cfg.train, p.cfg.train.early_stopping
    picking, stopping = selection.picking_rule(spec), selection.stop_rule(spec)
    best, stopper = trackers["best"], trackers["stopper"]
    # steps as the step events count them: batches (micro-batches under accumulation)
    steps = -(-len(p.splits.train) // optim.batch_size(spec, start))
    p.progress.emit("start", epochs=spec.epochs, steps_per_epoch=steps, start_epoch=start)
    for epoch in range(start, spec.epochs + 1):
        row = _epoch(p, epoch)
        history.append(row)
        if picking is not None and selection.update(best, picking, row):
            checkpoint.save_best(p.checkpoints, p.model, epoch=epoch)
        if stopping is not None:
            selection.update(stopper, stopping, row)
        checkpoint.save(
            p.checkpoints,
            {
                "epoch": epoch,
                "model": checkpoint.model_state(p.model),
                "optimizer": p.optimizer.state_dict(),
                "scheduler": p.schedule.state_dict(),
                "scaler": p.scaler.state_dict() if p.scaler else {},
                "rng": checkpoint.rng_state(),
                "best": best,
                "stopper": stopper,
                "history": [m.model_dump() for m in history],
            },
        )
        checkpoint.prune_best(p.checkpoints, keep=best["epoch"])
        _append_metrics(p.job_dir, row)
        p.progress.emit("epoch", **row.model_dump())
        p.progress.say(
            f"epoch {epoch}/{spec.epochs}: train loss {row.train_loss:.4f} "
            f"acc {row.train_accuracy:.3f}"
            + (
                f" | val loss {row.val_loss:.4f} acc {row.val_accuracy:.3f}"
                if row.val_loss is not None
                else ""
            )
        )
        if stopping is not None and stopper["bad"] >= es.patience:
            p.progress.say(f"early stopping: no improvement for {es.patience} epochs")
            return epoch < spec.epochs
    return False


def _epoch(p: Parts, epoch: int) -> EpochMetrics:
    """One pass over the training data, then one over the validation data."""
    spec = p.cfg.train
    poison = fault(epoch, p.stop, p.job_dir.name)
    if spec.weight_decay_schedule:
        optim.set_weight_decay(p.optimizer, optim.at_epoch(spec.weight_decay_schedule, epoch, 0.0))
    p.schedule.start_epoch(epoch)  # lr_schedule
    batch = optim.batch_size(spec, epoch)
    train_data = loop.loader(
        p.splits.train,
        kind=p.splits.kind,
        batch_size=batch,
        shuffle_seed=spec.seed * 100_003 + epoch,
        workers=p.cfg.data.num_workers,
    )

    def on_log(step, n_steps, loss, rate):
        p.progress.emit(
            "step", epoch=epoch, step=step, steps=n_steps, loss=loss, samples_per_second=rate
        )

    stats = loop.train_epoch(
        model=p.forward,
        built=p.built,
        data=train_data,
        inputs=p.train_inputs,
        loss_fn=p.loss_fn,
        optimizer=p.optimizer,
        schedule=p.schedule,
        accumulation=spec.grad_accumulation,
        grad_clip=spec.grad_clip,
        autocast=p.autocast,
        log_every=spec.log_every,
        on_log=on_log,
        check_stop=p.stop.check,
        poison=poison,
        scaler=p.scaler,
    )
    val_started = time.perf_counter()
    val_loss, scores = None, {}
    if len(p.splits.val):
        val_loss, probs, y_val = _evaluate(p, p.splits.val, batch_size=batch)
        scores = metrics.epoch_scores(y_val, probs.argmax(axis=1))
    group = p.optimizer.param_groups[0]
    lr = group["lr"]  # what the epoch's last step used: read before an epoch-wise schedule
    p.schedule.after_epoch(val_loss)
    return EpochMetrics(
        epoch=epoch,
        train_loss=stats.loss,
        train_accuracy=stats.accuracy,
        val_loss=val_loss,
        **scores,
        lr=lr,
        batch_size=batch,
        weight_decay=group.get("weight_decay"),
        seconds=stats.seconds + time.perf_counter() - val_started,
        samples_per_second=stats.samples / max(stats.seconds, 1e-9),
    )


def _evaluate(p: Parts, split: data.Split, *, batch_size: int):
    """(mean hard loss, class probabilities, labels) of a split, in evaluation mode."""
    return loop.evaluate(
        model=p.forward,
        built=p.built,
        data=loop.loader(split, kind=p.splits.kind, batch_size=batch_size),
        inputs=p.inputs,
        loss_fn=lambda o, y, x: p.hard_loss(o, y),
        autocast=p.autocast,
        check_stop=p.stop.check,
    )


# ------------------------------------------------------------------- the test


def _test(p: Parts, *, epoch: int | None):
    """Test metrics with the weights of the best `epoch` (None: the last epoch's, in the
    model now); weights/ and predictions.npz as configured."""
    output = p.cfg.output
    if output.save_weights == "last":  # before the best weights replace them
        checkpoint.export(
            p.job_dir / WEIGHTS, p.model, lora=p.cfg.lora.enabled, pretrained=p.cfg.model.pretrained
        )
    checkpoint.load_best(p.checkpoints, p.model, epoch=epoch)
    test_loss, probs, y_test = _evaluate(p, p.splits.test, batch_size=p.cfg.train.batch_size)
    test = metrics.test_metrics(
        y_true=y_test,
        probs=probs,
        loss=test_loss,
        class_names=p.splits.class_names,
        k=p.cfg.train.topk,
    )
    test = metrics.with_extras(test, p.cfg.train.metrics, y_true=y_test, probs=probs)
    if output.save_predictions:
        write_atomic(
            p.job_dir / PREDICTIONS, lambda tmp: _save_npz(tmp, y_true=y_test, probs=probs)
        )
    if output.save_weights == "best":
        checkpoint.export(
            p.job_dir / WEIGHTS, p.model, lora=p.cfg.lora.enabled, pretrained=p.cfg.model.pretrained
        )
    return test


def _save_npz(path: str, **arrays: np.ndarray) -> None:
    with open(path, "wb") as f:  # a file, not a name: numpy would append ".npz" to it
        np.savez_compressed(f, **arrays)


# ------------------------------------------------------------------- helpers


def _versions() -> dict[str, str]:
    import peft
    import torchvision
    import transformers

    return {
        "ftmatrix": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
    }


def _append_metrics(job_dir: Path, row: EpochMetrics) -> None:
    with (job_dir / METRICS).open("a", encoding="utf-8") as f:
        f.write(row.model_dump_json() + "\n")
        f.flush()
        os.fsync(f.fileno())


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
