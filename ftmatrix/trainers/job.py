"""One job: `main(job_dir)` reads config.json, trains, evaluates, writes its result.

Reads top to bottom: data -> model (+ LoRA, + teacher) -> loss, optimizer, schedule ->
resume from the last checkpoint -> epochs (early stopping, best weights) -> test with
the best weights -> weights/, predictions.npz, result.json (last, atomically).

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
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from ftmatrix import __version__
from ftmatrix.config import JobConfig
from ftmatrix.result import (
    CONFIG,
    LOG,
    METRICS,
    PROGRESS,
    EpochMetrics,
    Params,
    Result,
    write_json_atomic,
)
from ftmatrix.trainers import (
    augment,
    checkpoint,
    data,
    distill,
    loop,
    losses,
    metrics,
    models,
    optim,
)
from ftmatrix.trainers import lora as lora_mod
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
    write_json_atomic(job_dir / "result.json", result.model_dump(mode="json"))
    progress.emit("end", status="done")
    return 0


def _fail(job_dir: Path, result: Result, error: str, message: str, progress: Progress) -> int:
    progress.say(f"FAILED ({error}): {message}")
    sys.stdout.flush()
    result.status = "failed"
    result.error_class = error
    result.error_message = message
    result.log_tail = _tail(job_dir / LOG)
    result.finished_at = _now()
    write_json_atomic(job_dir / "result.json", result.model_dump(mode="json"))
    progress.emit("end", status="failed", error_class=error)
    return 1


def train(cfg: JobConfig, *, job_dir: Path, result: Result, progress: Progress, stop: Stop) -> None:
    t0 = time.time()
    spec = cfg.train
    device = _device(spec.device)
    autocast = _autocast(spec.precision, device)
    _tune_kernels(device)
    result.device = str(device) + (
        f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""
    )
    result.precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(autocast, "fp32")
    result.versions = _versions()
    ckpt_dir = job_dir / "checkpoint"
    state = checkpoint.load(ckpt_dir)
    start_epoch = state["epoch"] + 1 if state else 1
    with (job_dir / "starts.log").open("a") as f:
        gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "")  # the runner's pool pins GPUs
        f.write(f"{_now()} start epoch={start_epoch} gpus={gpus} pid={os.getpid()}\n")
    _seed(spec.seed)

    # ---- data and model
    splits = data.load(
        cfg, tokenizer=models.tokenizer(cfg), cache_dir=data.cache.default_dir(job_dir)
    )
    classes = splits.class_names
    _seed(spec.seed)  # the same initial weights whatever the data loading drew
    built = models.build(cfg, len(classes), classes)
    model = built.model
    if cfg.lora.enabled:
        model = lora_mod.wrap(model, cfg.lora, head=built.head)
    model.to(device)
    if device.type == "cuda" and built.source == "torchvision":
        model = model.to(memory_format=torch.channels_last)
    trainable, total = models.count_parameters(model)
    result.params = Params(
        trainable=trainable, total=total, trainable_percent=100.0 * trainable / max(total, 1)
    )
    teacher = None
    if cfg.distill.enabled:
        teacher = distill.teacher(
            cfg.distill, job_dir=job_dir, cfg=cfg, student=built, class_names=classes
        )
        teacher.model.to(device)
    forward = model
    if spec.compile:
        forward = torch.compile(model)

    # ---- loss, optimizer, schedule
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
    scaler = torch.amp.GradScaler(device.type) if autocast == torch.float16 else None
    schedule = optim.Schedule(spec, optimizer, n_train=len(splits.train))
    inputs = loop.Inputs(built, device, splits.kind)
    train_inputs = inputs
    if splits.kind == "image" and cfg.data.augment.enabled:
        # on the uint8 training batches, on the device: the loader only slices them
        transform = augment.BatchAugment(cfg.data.augment, cfg.model.image_size)
        train_inputs = loop.Inputs(built, device, splits.kind, transform=transform)
    for split in (
        (splits.val, splits.test)
        if train_inputs.transform
        else (splits.train, splits.val, splits.test)
    ):
        inputs.normalize_once(split)

    # ---- resume
    es = cfg.train.early_stopping
    sign = 1.0 if es.mode == "min" else -1.0
    best = {"value": None, "epoch": None, "bad": 0}
    history: list[EpochMetrics] = []
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        if scaler and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        checkpoint.set_rng_state(state["rng"])
        best = dict(state["best"])
        history = [EpochMetrics.model_validate(m) for m in state["history"]]
        result.resumed_from_epoch = state["epoch"]
        progress.say(f"resuming after epoch {state['epoch']}")
    _rewrite_metrics(job_dir, history)
    result.timing["setup"] = time.time() - t0

    # steps as the step events count them: batches (micro-batches under accumulation)
    steps = -(-len(splits.train) // optim.batch_size(spec, start_epoch))
    progress.emit("start", epochs=spec.epochs, steps_per_epoch=steps, start_epoch=start_epoch)
    stopped_early = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, spec.epochs + 1):
        poison = fault(epoch, stop, job_dir.name)
        if spec.weight_decay_schedule:
            optim.set_weight_decay(
                optimizer, optim.at_epoch(spec.weight_decay_schedule, epoch, 0.0)
            )
        batch = optim.batch_size(spec, epoch)
        train_data = loop.loader(
            splits.train,
            kind=splits.kind,
            batch_size=batch,
            shuffle_seed=spec.seed * 100_003 + epoch,
            workers=cfg.data.num_workers,
        )

        def on_log(step, n_steps, loss, rate, epoch=epoch):
            progress.emit(
                "step", epoch=epoch, step=step, steps=n_steps, loss=loss, samples_per_second=rate
            )

        stats = loop.train_epoch(
            model=forward,
            built=built,
            data=train_data,
            inputs=train_inputs,
            loss_fn=loss_fn,
            optimizer=optimizer,
            schedule=schedule,
            accumulation=spec.grad_accumulation,
            grad_clip=spec.grad_clip,
            autocast=autocast,
            log_every=spec.log_every,
            on_log=on_log,
            check_stop=stop.check,
            poison=poison,
            scaler=scaler,
        )
        val_started = time.perf_counter()
        val_loss = val_acc = val_f1 = None
        if len(splits.val):
            val_data = loop.loader(splits.val, kind=splits.kind, batch_size=batch)
            val_loss, probs, y_val = loop.evaluate(
                model=forward,
                built=built,
                data=val_data,
                inputs=inputs,
                loss_fn=lambda o, y, x: hard_loss(o, y),
                autocast=autocast,
                check_stop=stop.check,
            )
            pred = probs.argmax(axis=1)
            val_acc = float((pred == y_val).mean())
            val_f1 = metrics.f1_macro(y_val, pred)
        schedule.after_epoch(val_loss)
        row = EpochMetrics(
            epoch=epoch,
            train_loss=stats.loss,
            train_accuracy=stats.accuracy,
            val_loss=val_loss,
            val_accuracy=val_acc,
            val_f1=val_f1,
            lr=optimizer.param_groups[0]["lr"],
            seconds=stats.seconds + time.perf_counter() - val_started,
            samples_per_second=stats.samples / max(stats.seconds, 1e-9),
        )
        history.append(row)
        monitored = {"val_loss": val_loss, "val_accuracy": val_acc, "val_f1": val_f1}[es.metric]
        if monitored is None:  # no validation split: the last epoch is the best
            monitored = -float(epoch) * sign
        improved = best["value"] is None or sign * (best["value"] - monitored) > es.min_delta
        if improved:
            best.update(value=monitored, epoch=epoch, bad=0)
            checkpoint.save_best(ckpt_dir, model, epoch=epoch)
        else:
            best["bad"] += 1
        checkpoint.save(
            ckpt_dir,
            {
                "epoch": epoch,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": schedule.state_dict(),
                "scaler": scaler.state_dict() if scaler else {},
                "rng": checkpoint.rng_state(),
                "best": best,
                "history": [m.model_dump() for m in history],
            },
        )
        checkpoint.prune_best(ckpt_dir, keep=best["epoch"])
        _append_metrics(job_dir, row)
        progress.emit("epoch", **row.model_dump())
        progress.say(
            f"epoch {epoch}/{spec.epochs}: train loss {stats.loss:.4f} acc {stats.accuracy:.3f}"
            + (f" | val loss {val_loss:.4f} acc {val_acc:.3f}" if val_loss is not None else "")
        )
        if es.enabled and best["bad"] >= es.patience:
            stopped_early = epoch < spec.epochs
            progress.say(f"early stopping: no improvement for {es.patience} epochs")
            break
    result.timing["train"] = sum(m.seconds for m in history)
    result.timing["per_epoch"] = result.timing["train"] / max(len(history), 1)

    # ---- test with the best weights
    t_eval = time.time()
    last_state = None
    if cfg.output.save_weights == "last":
        last_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    checkpoint.load_best(ckpt_dir, model, epoch=best["epoch"])
    test_data = loop.loader(splits.test, kind=splits.kind, batch_size=spec.batch_size)
    test_loss, probs, y_test = loop.evaluate(
        model=forward,
        built=built,
        data=test_data,
        inputs=inputs,
        loss_fn=lambda o, y, x: hard_loss(o, y),
        autocast=autocast,
        check_stop=stop.check,
    )
    if len(y_test) == 0:
        raise data.DataError("the test split is empty (data.test_fraction is 0 and no test/)")
    result.test = metrics.test_metrics(
        y_true=y_test, probs=probs, loss=test_loss, class_names=classes, k=spec.topk
    )
    result.timing["eval"] = time.time() - t_eval
    if cfg.output.save_predictions:
        np.savez_compressed(job_dir / "predictions.npz", y_true=y_test, probs=probs)
    if cfg.output.save_weights != "none":
        if last_state is not None:
            model.load_state_dict(last_state)
        checkpoint.export(
            job_dir / "weights", model, lora=cfg.lora.enabled, pretrained=cfg.model.pretrained
        )
    result.best_epoch = best["epoch"]
    result.epochs_run = len(history)
    result.stopped_early = stopped_early
    progress.say(
        f"test accuracy {result.test.accuracy:.4f}, macro F1 {result.test.f1_macro:.4f} "
        f"(best epoch {best['epoch']})"
    )


# ------------------------------------------------------------------- helpers


def _device(wanted: str) -> torch.device:
    if wanted != "auto":
        return torch.device(wanted)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _autocast(precision: str, device: torch.device) -> torch.dtype | None:
    """bf16 autocast on GPUs that support it (auto), fp32 elsewhere."""
    if precision == "fp32" or device.type == "cpu":
        return None
    if precision == "fp16":
        return torch.float16
    # auto: only where bf16 is native (Ampere on); emulated bf16 (a T4) is slower than fp32
    native = device.type == "cuda" and torch.cuda.is_bf16_supported(including_emulation=False)
    if precision == "bf16" or native:
        return torch.bfloat16
    return None


def _tune_kernels(device: torch.device) -> None:
    """cuDNN times its convolution algorithms on the first batch of each shape and keeps
    the fastest: every batch of a job has the image size of the matrix (one other shape
    for a short last batch), so the search pays for itself within the first epoch."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def _seed(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


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


def _rewrite_metrics(job_dir: Path, history: list[EpochMetrics]) -> None:
    """metrics.jsonl holds exactly the checkpointed epochs (drops a killed epoch's line)."""
    from ftmatrix.result import write_atomic

    write_atomic(job_dir / METRICS, "".join(m.model_dump_json() + "\n" for m in history))


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
