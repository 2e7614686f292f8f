"""Task causal-lm: one instruction fine-tuning job, called by job.py's `train`.

Reads top to bottom in `train`: pairs and tokenizer (sft_data.py) -> the causal LM,
its PEFT method (`lora:`), optimizer and schedule -> resume from checkpoint/ -> epochs
(loss on response tokens only, gradient accumulation, bf16 autocast on GPUs, a
checkpoint after each, val loss and perplexity in metrics.jsonl) -> test with the
weights of the epoch `train.test` names: test loss, perplexity, exact match of greedy
generations through `data.sft.answer_regex` -> weights/ (the adapter, or the model).
The caller (job.py) writes result.json and handles signals and failures.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ftmatrix.config import JobConfig
from ftmatrix.result import (
    CHECKPOINT,
    METRICS,
    WEIGHTS,
    EpochMetrics,
    Result,
    TestMetrics,
    write_atomic,
)
from ftmatrix.trainers import (
    causal_lm,
    checkpoint,
    compute,
    loop,
    models,
    optim,
    peft_methods,
    selection,
    sft_data,
)
from ftmatrix.trainers.causal_lm import IGNORE, Example


@dataclass
class Parts:
    """What the epochs train with."""

    cfg: JobConfig
    job_dir: Path
    device: torch.device
    autocast: torch.dtype | None
    progress: Any  # job.Progress: emit(event, **fields), say(text)
    stop: Any  # job.Stop: check()
    tok: Any  # causal_lm.CharTokenizer or sft_data.HubTokenizer
    rows: list[Example]  # training rows (packed when data.sft.packing)
    val: list[Example]
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    schedule: optim.Schedule


def train(
    cfg: JobConfig,
    *,
    job_dir: Path,
    result: Result,
    progress,
    stop,
    fault: Callable[[int, object, str], bool],
) -> None:
    """Train and test a causal-lm job, filling `result` (the caller writes it)."""
    t0 = time.time()
    device = compute.device(cfg.train.device)
    autocast = compute.autocast(cfg.train.precision, device)
    result.device, result.precision = compute.describe(device), compute.precision_name(autocast)
    state = checkpoint.load(job_dir / CHECKPOINT)
    start = checkpoint.begin(job_dir, state, seed=cfg.train.seed)
    p = _prepare(
        cfg, job_dir=job_dir, device=device, autocast=autocast, progress=progress, stop=stop
    )
    result.params = models.params_record(p.model)
    trackers = {"best": selection.fresh(), "stopper": selection.fresh()}
    history: list[EpochMetrics] = []
    if state:
        checkpoint.load_model_state(p.model, state["model"])
        p.optimizer.load_state_dict(state["optimizer"])
        p.schedule.load_state_dict(state["scheduler"])
        checkpoint.set_rng_state(state["rng"])
        trackers = {"best": dict(state["best"]), "stopper": dict(state["stopper"])}
        history = [EpochMetrics.model_validate(m) for m in state["history"]]
        result.resumed_from_epoch = state["epoch"]
        progress.say(f"resuming after epoch {state['epoch']}")
    write_atomic(job_dir / METRICS, "".join(m.model_dump_json() + "\n" for m in history))
    result.timing["setup"] = time.time() - t0

    stopped = _epochs(p, start=start, trackers=trackers, history=history, fault=fault)
    result.timing["train"] = sum(m.seconds for m in history)
    result.timing["per_epoch"] = result.timing["train"] / max(len(history), 1)
    tokens = sum((m.tokens_per_second or 0) * m.seconds for m in history)
    result.tokens_per_second = tokens / max(result.timing["train"], 1e-9)

    rule = selection.picking_rule(cfg.train)
    best = trackers["best"]["epoch"] if rule is not None else None
    result.tested_epoch, result.tested_by = selection.tested(rule, best, history[-1].epoch)
    result.unranked_epochs = selection.unranked(history, rule)
    t_eval = time.time()
    result.test = _test(p, splits_test=_test_pairs(cfg, p), epoch=best)
    result.timing["eval"] = time.time() - t_eval
    result.adapter_bytes = peft_methods.adapter_bytes(job_dir / WEIGHTS)
    result.peak_memory_bytes = peft_methods.peak_memory(device)
    result.best_epoch, result.epochs_run, result.stopped_early = best, len(history), stopped
    progress.say(
        f"test exact match {result.test.exact_match:.4f}, perplexity "
        f"{result.test.perplexity:.3f} (epoch {result.tested_epoch}: {result.tested_by})"
    )


def _test_pairs(cfg: JobConfig, p: Parts) -> list[tuple[str, str]]:
    """The test pairs, prompts rendered as the model reads them."""
    splits = sft_data.load(cfg)  # deterministic: the same split as before the epochs
    return [(sft_data.render(cfg, p.tok, q), a) for q, a in splits.test]


def _examples(cfg: JobConfig, tok, pairs) -> list[Example]:
    assert cfg.model is not None
    return [
        causal_lm.example(tok, sft_data.render(cfg, tok, q), a, max_length=cfg.model.max_length)
        for q, a in pairs
    ]


def _prepare(cfg: JobConfig, *, job_dir: Path, device, autocast, progress, stop) -> Parts:
    """Data, tokenizer, model (+ PEFT method), optimizer and schedule, on `device`."""
    assert cfg.model is not None and cfg.data is not None
    splits = sft_data.load(cfg)
    tok = sft_data.tokenizer(cfg, splits)
    rows = _examples(cfg, tok, splits.train)
    if cfg.data.sft.packing:
        rows = causal_lm.pack(rows, max_length=cfg.model.max_length)
    checkpoint.seed_everything(cfg.train.seed)  # the same initial weights whatever the data drew
    model = sft_data.build(cfg, tok)
    if cfg.model.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.config.use_cache = False
    if cfg.lora.enabled:
        spec = cfg.train
        steps = -(-len(rows) // spec.batch_size) * spec.epochs // spec.grad_accumulation
        model = peft_methods.wrap(model, cfg.lora, head=None, total_steps=steps, task=cfg.task)
        if cfg.model.gradient_checkpointing:
            model.enable_input_require_grads()  # frozen embeddings: checkpoints need a grad
    model.to(device)
    optimizer = optim.build_optimizer(cfg.train, model, device=device.type)
    peft_methods.after_steps(model, optimizer)  # AdaLoRA's rank allocation
    return Parts(
        cfg=cfg,
        job_dir=job_dir,
        device=device,
        autocast=autocast,
        progress=progress,
        stop=stop,
        tok=tok,
        rows=rows,
        val=_examples(cfg, tok, splits.val),
        model=model,
        optimizer=optimizer,
        schedule=optim.Schedule(cfg.train, optimizer, n_train=len(rows)),
    )


# ------------------------------------------------------------------- the epochs


def _epochs(p: Parts, *, start: int, trackers: dict, history: list, fault) -> bool:
    """Epochs from `start`, a checkpoint after each; True when early stopping ended it."""
    spec = p.cfg.train
    picking, stopping = selection.picking_rule(spec), selection.stop_rule(spec)
    steps = -(-len(p.rows) // spec.batch_size)
    p.progress.emit("start", epochs=spec.epochs, steps_per_epoch=steps, start_epoch=start)
    for epoch in range(start, spec.epochs + 1):
        row = _epoch(p, epoch, poison=fault(epoch, p.stop, p.job_dir.name))
        history.append(row)
        if picking is not None and selection.update(trackers["best"], picking, row):
            checkpoint.save_best(p.job_dir / CHECKPOINT, p.model, epoch=epoch)
        if stopping is not None:
            selection.update(trackers["stopper"], stopping, row)
        checkpoint.save(
            p.job_dir / CHECKPOINT,
            {
                "epoch": epoch,
                "model": checkpoint.model_state(p.model),
                "optimizer": p.optimizer.state_dict(),
                "scheduler": p.schedule.state_dict(),
                "rng": checkpoint.rng_state(),
                "best": trackers["best"],
                "stopper": trackers["stopper"],
                "history": [m.model_dump() for m in history],
            },
        )
        checkpoint.prune_best(p.job_dir / CHECKPOINT, keep=trackers["best"]["epoch"])
        with (p.job_dir / METRICS).open("a", encoding="utf-8") as f:
            f.write(row.model_dump_json() + "\n")
            f.flush()
            os.fsync(f.fileno())
        p.progress.emit("epoch", **row.model_dump())
        val = f" | val loss {row.val_loss:.4f} ppl {row.val_perplexity:.3f}" if row.val_loss else ""
        p.progress.say(f"epoch {epoch}/{spec.epochs}: train loss {row.train_loss:.4f}{val}")
        if stopping is not None and trackers["stopper"]["bad"] >= spec.early_stopping.patience:
            p.progress.say("early stopping: no improvement")
            return epoch < spec.epochs
    return False


def _autocast(p: Parts):
    if p.autocast is None:
        return contextlib.nullcontext()
    return torch.autocast(p.device.type, dtype=p.autocast)


def _on(p: Parts, batch: dict) -> dict:
    return {k: v.to(p.device, non_blocking=True) for k, v in batch.items()}


def _epoch(p: Parts, epoch: int, *, poison: bool) -> EpochMetrics:
    """One pass over the training rows (gradient accumulation), then validation."""
    spec, tok = p.cfg.train, p.tok
    if spec.weight_decay_schedule:
        optim.set_weight_decay(p.optimizer, optim.at_epoch(spec.weight_decay_schedule, epoch, 0.0))
    p.schedule.start_epoch(epoch)
    order = list(range(len(p.rows)))
    random.Random(spec.seed * 100_003 + epoch).shuffle(order)
    size, accum = spec.batch_size, spec.grad_accumulation
    starts = list(range(0, len(order), size))
    p.model.train()
    began, total, tokens, seen = time.perf_counter(), 0.0, 0, 0
    for i, s in enumerate(starts):
        p.stop.check()
        b = _on(p, causal_lm.batch([p.rows[j] for j in order[s : s + size]], pad_id=tok.pad_id))
        with _autocast(p):
            loss = p.model(**b).loss
        if poison:
            loss = loss * float("nan")
        value = float(loss.detach())
        if not math.isfinite(value):
            raise loop.NanLoss(f"the loss became {value} at epoch {epoch}, step {i + 1}")
        (loss / accum).backward()
        total, seen = total + value, seen + 1
        tokens += int(b["attention_mask"].sum())
        if (i + 1) % accum == 0 or i + 1 == len(starts):
            if spec.grad_clip:
                torch.nn.utils.clip_grad_norm_(p.model.parameters(), spec.grad_clip)
            p.optimizer.step()
            p.optimizer.zero_grad(set_to_none=True)
            p.schedule.after_step()
        if (i + 1) % spec.log_every == 0 or i + 1 == len(starts):
            p.progress.emit(
                "step",
                epoch=epoch,
                step=i + 1,
                steps=len(starts),
                loss=total / seen,
                samples_per_second=(s + size) / (time.perf_counter() - began),
            )
    seconds = time.perf_counter() - began
    lr = p.optimizer.param_groups[0]["lr"]
    val_loss = _mean_loss(p, p.val) if p.val else None
    p.schedule.after_epoch(val_loss)
    return EpochMetrics(
        epoch=epoch,
        train_loss=total / max(seen, 1),
        val_loss=val_loss,
        val_perplexity=None if val_loss is None else causal_lm.perplexity(val_loss),
        lr=lr,
        batch_size=size,
        weight_decay=p.optimizer.param_groups[0].get("weight_decay"),
        seconds=time.perf_counter() - began,
        samples_per_second=len(order) / max(seconds, 1e-9),
        tokens_per_second=tokens / max(seconds, 1e-9),
    )


def _mean_loss(p: Parts, examples: list[Example]) -> float:
    """Token-weighted mean loss over the response tokens of `examples`."""
    total, tokens = 0.0, 0
    p.model.eval()
    with torch.no_grad():
        for s in range(0, len(examples), p.cfg.train.batch_size):
            part = examples[s : s + p.cfg.train.batch_size]
            b = _on(p, causal_lm.batch(part, pad_id=p.tok.pad_id))
            n = int((b["labels"][:, 1:] != IGNORE).sum())
            with _autocast(p):
                total += float(p.model(**b).loss) * n
            tokens += n
    return total / max(tokens, 1)


# ------------------------------------------------------------------- the test


def _test(p: Parts, *, splits_test: list[tuple[str, str]], epoch: int | None) -> TestMetrics:
    """Loss, perplexity and exact match on the test pairs with the weights of `epoch`
    (None: the last epoch's); weights/ as configured."""
    output, lora = p.cfg.output, p.cfg.lora.enabled
    assert p.cfg.model is not None
    pretrained = p.cfg.model.pretrained
    if output.save_weights == "last":
        checkpoint.export(p.job_dir / WEIGHTS, p.model, lora=lora, pretrained=pretrained)
    checkpoint.load_best(p.job_dir / CHECKPOINT, p.model, epoch=epoch)
    held = _examples(p.cfg, p.tok, splits_test)
    loss = _mean_loss(p, held)
    hits = exact_matches(p, splits_test)
    if output.save_weights == "best":
        checkpoint.export(p.job_dir / WEIGHTS, p.model, lora=lora, pretrained=pretrained)
    score = sum(hits) / max(len(hits), 1)
    return TestMetrics(
        loss=loss,
        accuracy=score,
        exact_match=score,
        perplexity=causal_lm.perplexity(loss),
        n=len(hits),
    )


def extract(pattern: re.Pattern, text: str) -> str | None:
    """The answer in `text`: the pattern's first group, else its whole match."""
    m = pattern.search(text)
    return None if m is None else (m.group(1) if m.groups() else m.group(0))


def exact_matches(p: Parts, pairs: list[tuple[str, str]]) -> list[bool]:
    """Per test pair: whether the greedy generation's answer equals the reference's.
    Prompts go in batches, left-padded, so each generation starts right after its
    prompt."""
    assert p.cfg.data is not None
    sft, tok = p.cfg.data.sft, p.tok
    pattern = re.compile(sft.answer_regex)
    hits: list[bool] = []
    p.model.eval()
    for s in range(0, len(pairs), p.cfg.train.batch_size):
        part = pairs[s : s + p.cfg.train.batch_size]
        prompts = [[tok.bos_id, *tok.encode(q)] for q, _ in part]
        width = max(map(len, prompts))
        ids = torch.full((len(part), width), tok.pad_id)
        mask = torch.zeros((len(part), width), dtype=torch.long)
        for i, q in enumerate(prompts):
            ids[i, width - len(q) :] = torch.tensor(q)
            mask[i, width - len(q) :] = 1
        with torch.no_grad(), _autocast(p):
            out = p.model.generate(
                input_ids=ids.to(p.device),
                attention_mask=mask.to(p.device),
                max_new_tokens=sft.max_new_tokens,
                do_sample=False,
                eos_token_id=tok.eos_id,
                pad_token_id=tok.pad_id,
            )
        for row, (_, answer) in zip(out[:, width:].tolist(), part, strict=True):
            if tok.eos_id in row:
                row = row[: row.index(tok.eos_id)]
            got = extract(pattern, tok.decode(row))
            hits.append(got is not None and got == extract(pattern, answer))
    return hits
