"""What a PEFT-methods or LLM study compares besides accuracy: trainable parameters,
adapter size on disk, peak memory, and a causal-lm job's exact match, perplexity and
tokens/s, in report.md, results.csv and report.html (run folders written directly)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from ftmatrix import result as results
from ftmatrix.reports import tables
from ftmatrix.reports.collect import load
from ftmatrix.reports.html import page_data
from ftmatrix.reports.report import results_csv, write
from ftmatrix.result import RESULT, Params, Result
from tests.trackers.runs import write_run

MiB = 1024 * 1024

# method -> (trainable, adapter bytes, peak memory bytes, accuracy)
METHODS = {
    "none": (4000, 0, 900 * MiB, 0.91),
    "lora": (120, 3 * MiB // 2, 300 * MiB, 0.90),
    "ia3": (12, 2048, 250 * MiB, 0.85),
}


def peft_study(tmp_path: Path) -> Path:
    """Three jobs of a `lora.method` axis whose results carry sizes and memory."""
    jobs = [
        {"id": f"{m:x<12}", "settings": {"lora.method": m}, "state": "done", "acc": v[3]}
        for m, v in METHODS.items()
    ]
    root = write_run(tmp_path / "runs" / "peft", jobs, axes=["lora.method"], name="peft")
    for job in jobs:
        trainable, adapter, peak, _ = METHODS[job["settings"]["lora.method"]]
        path = root / job["id"] / RESULT
        result = Result.model_validate_json(path.read_text())
        result.params = Params(
            trainable=trainable, total=4000, trainable_percent=100 * trainable / 4000
        )
        result.adapter_bytes, result.peak_memory_bytes = adapter, peak
        path.write_text(result.model_dump_json())
    return root


def llm_study(tmp_path: Path) -> Path:
    """Two causal-lm jobs (rank 4 and 8), as sft_job writes them: accuracy is the exact
    match, no F1, precision or recall."""
    figures = {"4": (0.55, 1.8, 2100.0), "8": (0.75, 1.4, 1900.0)}  # em, perplexity, tok/s
    jobs = [
        {"id": f"r{r}".ljust(12, "0"), "settings": {"lora.r": r}, "state": "done", "acc": em}
        for r, (em, _, _) in figures.items()
    ]
    root = write_run(tmp_path / "runs" / "sft", jobs, axes=["lora.r"], name="sft")
    for job in jobs:
        em, ppl, tps = figures[job["settings"]["lora.r"]]
        path = root / job["id"] / RESULT
        result = Result.model_validate_json(path.read_text())
        result.test = results.TestMetrics(
            loss=0.5, accuracy=em, exact_match=em, perplexity=ppl, n=40
        )
        result.tokens_per_second = tps
        result.adapter_bytes = 8192 * int(job["settings"]["lora.r"])
        result.peak_memory_bytes = 512 * MiB
        path.write_text(result.model_dump_json())
    return root


def column(table: tables.Table, header: str) -> dict[str, str]:
    """The cells of one column, by the row's first axis value."""
    at = table.headers.index(header)
    return {row[1]: row[at] for row in table.rows}


def test_bytes_are_shown_in_binary_units():
    assert tables.bytes_cell(0) == "0 B"
    assert tables.bytes_cell(1023) == "1023 B"
    assert tables.bytes_cell(1536) == "1.5 KiB"
    assert tables.bytes_cell(3 * MiB // 2) == "1.5 MiB"
    assert tables.bytes_cell(5 * 1024 * MiB) == "5.0 GiB"
    assert tables.bytes_cell(3000 * 1024 * MiB) == "3000.0 GiB"


def test_a_peft_methods_study_shows_trainable_adapter_size_and_peak_memory(tmp_path):
    study = load(peft_study(tmp_path))
    table = tables.comparison(study, "test.accuracy")
    assert column(table, "trainable") == {
        "none": "4,000 (100.00%)",
        "lora": "120 (3.00%)",
        "ia3": "12 (0.30%)",
    }
    # the full model (0 adapter bytes) has no adapter: blank, not "0 B"
    assert column(table, "adapter") == {"none": "", "lora": "1.5 MiB", "ia3": "2.0 KiB"}
    assert column(table, "peak memory") == {
        "none": "900.0 MiB",
        "lora": "300.0 MiB",
        "ia3": "250.0 MiB",
    }
    # classifier metrics as before; nothing of a causal-lm job
    assert table.headers[2:6] == ["test acc", "macro F1", "precision", "recall"]
    assert "exact match" not in table.headers and "tokens/s" not in table.headers
    assert table.headers.index("adapter") == table.headers.index("trainable") + 1
    assert {i for i, h in enumerate(table.headers) if h in ("adapter", "peak memory")} <= (
        table.align_right
    )


def test_a_peft_methods_study_writes_sizes_to_csv_markdown_and_html(tmp_path):
    root = peft_study(tmp_path)
    study = load(root)
    rows = {r["setting.lora.method"]: r for r in csv.DictReader(io.StringIO(results_csv(study)))}
    assert rows["lora"]["adapter_bytes"] == str(3 * MiB // 2)
    assert rows["none"]["adapter_bytes"] == "0"
    assert rows["ia3"]["peak_memory_bytes"] == str(250 * MiB)
    assert "tokens_per_second" not in rows["ia3"]  # no job wrote it
    text = write(root, plots=False).read_text()
    assert "| adapter | peak memory |" in text
    assert "| 1.5 MiB | 300.0 MiB |" in text
    jobs = {j["settings"]["lora.method"]: j for j in page_data(study, metric="test.accuracy",
                                                               searched=None)["jobs"]}  # fmt: skip
    assert jobs["ia3"]["adapter_bytes"] == 2048
    assert jobs["none"]["peak_memory_bytes"] == 900 * MiB


def test_an_llm_study_shows_exact_match_perplexity_and_tokens_per_second(tmp_path):
    study = load(llm_study(tmp_path))
    table = tables.comparison(study, "test.exact_match")
    # no F1, precision, recall (no job has them); test acc is the exact match again
    for absent in ("test acc", "macro F1", "precision", "recall"):
        assert absent not in table.headers
    assert column(table, "exact match") == {"8": "0.7500", "4": "0.5500"}
    assert column(table, "perplexity") == {"8": "1.4000", "4": "1.8000"}
    assert column(table, "tokens/s") == {"8": "1900", "4": "2100"}
    assert column(table, "adapter") == {"8": "64.0 KiB", "4": "32.0 KiB"}
    assert table.rows[0][0] == tables.STAR and table.rows[0][1] == "8"
    # sorted by perplexity, the smallest is best
    assert tables.comparison(study, "test.perplexity").rows[0][1] == "8"


def test_an_llm_study_writes_its_metrics_to_csv_markdown_and_html(tmp_path):
    root = llm_study(tmp_path)
    study = load(root)
    rows = {r["setting.lora.r"]: r for r in csv.DictReader(io.StringIO(results_csv(study)))}
    assert rows["4"]["test.exact_match"] == "0.55"
    assert rows["8"]["test.perplexity"] == "1.4"
    assert rows["8"]["tokens_per_second"] == "1900.0"
    text = write(root, metric="exact_match", plots=False).read_text()
    assert "## Comparison (sorted by test.exact_match, ★ best)" in text
    assert "| exact match | perplexity |" in text and "macro F1" not in text
    data = page_data(study, metric="test.exact_match", searched=None)
    assert "test.exact_match" in data["metrics"] and "test.perplexity" in data["metrics"]
    assert data["best"][0] == "r80000000000"
    assert {j["tokens_per_second"] for j in data["jobs"]} == {1900.0, 2100.0}
