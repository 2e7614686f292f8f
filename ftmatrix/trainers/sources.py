"""What a data source holds, read without torch: an image folder's layout and a text
file's rows, with their class names, checked. Every problem is a `DataError` naming
the folder, or the file and line; nothing here guesses (a label written two ways is
an error, not two classes or one), so pre-flight may call these before any job.

Standard library and numpy only.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ftmatrix.config import DataConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "val", "test")


class DataError(Exception):
    """The data is missing, unreadable or malformed (error class `data_error`)."""


# ---------------------------------------------------------------------- images


def image_folder(path: Path) -> tuple[dict[str, tuple[list[Path], np.ndarray]], list[str]]:
    """({split: (image files, labels)}, class names) of train/ val/ test/ subfolders of
    class folders, or of one folder of class folders (all train). Folders whose names
    start with a dot (.ipynb_checkpoints) are not classes."""
    given_dirs = {name: path / name for name in SPLITS if (path / name).is_dir()}
    if given_dirs and "train" not in given_dirs:
        raise DataError(f"{path} has {', '.join(given_dirs)}/ but no train/")
    root = given_dirs.get("train", path)
    names = class_folders(root)
    if not names:
        raise DataError(f"{root} has no class folders")
    if len(names) == 1:
        raise DataError(f"{root} has one class folder ({names[0]}/): classification needs two")
    given = {}
    for split, folder in (given_dirs or {"train": path}).items():
        unknown = sorted(set(class_folders(folder)) - set(names))
        if unknown:
            raise DataError(f"{folder} has class folders that {root} lacks: {', '.join(unknown)}")
        files: list[Path] = []
        labels: list[int] = []
        for label, name in enumerate(names):
            class_dir = folder / name
            if class_dir.is_dir():
                found = sorted(f for f in class_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
                if not found:
                    raise DataError(f"the class folder {class_dir} holds no images")
                files += found
                labels += [label] * len(found)
        given[split] = (files, np.array(labels))
    return given, names


def class_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


# ----------------------------------------------------------------------- texts


def text_file(path: Path, data: DataConfig) -> tuple[list[str], np.ndarray, list[str]]:
    """(texts, label indexes, class names) of a .csv/.tsv/.jsonl file."""
    texts, raw, lines = read_texts(path, data)
    names = class_names(raw, lines, where=str(path))
    index = {n: i for i, n in enumerate(names)}
    return texts, np.array([index[str(label)] for label in raw]), names


def read_texts(path: Path, data: DataConfig) -> tuple[list[str], list[Any], list[int]]:
    """(texts, labels as written, line numbers) of a .csv/.tsv/.jsonl file; every row
    must have both columns, and a label that is a string or a number."""
    rows = _rows(path)
    if not rows:
        raise DataError(f"{path} has no rows")
    columns = (data.text_column, data.label_column)
    first = rows[0][1]
    for column in columns:
        if column not in first:
            raise DataError(f"{path} has no column '{column}' (columns: {', '.join(first)})")
    texts, labels = [], []
    for line, row in rows:
        label, text = row.get(data.label_column), row.get(data.text_column)
        if label is None or label == "":
            raise DataError(f"{path}:{line}: the row has no label ('{data.label_column}')")
        if not isinstance(label, (str, int, float)):
            raise DataError(f"{path}:{line}: a label is a string or a number, not {label!r}")
        if text is None:
            raise DataError(f"{path}:{line}: the row has no text ('{data.text_column}')")
        texts.append(str(text))
        labels.append(label)
    return texts, labels, [line for line, _ in rows]


def _rows(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of every row of the file."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".csv", ".tsv"):
        raise DataError(f"text data must be .csv, .tsv or .jsonl, got {path.name}")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from err
    try:
        text = raw.decode("utf-8-sig")  # (a spreadsheet's byte-order mark is no column)
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not UTF-8 text ({err.reason})") from err
    if suffix in (".jsonl", ".json"):
        return list(_jsonl_rows(path, text))
    reader = csv.DictReader(
        io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ","
    )
    try:
        return [(reader.line_num, row) for row in reader]
    except csv.Error as err:
        raise DataError(f"{path}:{reader.line_num}: not a CSV row ({err})") from err


def _jsonl_rows(path: Path, text: str):
    # split on newlines only: JSON strings may hold U+2028 and other line breaks
    for line, part in enumerate(text.split("\n"), 1):
        if not part.strip():
            continue
        try:
            row = json.loads(part)
        except ValueError as err:
            raise DataError(f"{path}:{line}: not a JSON line ({err})") from err
        if not isinstance(row, dict):
            kind = type(row).__name__
            raise DataError(f"{path}:{line}: a row must be a JSON object, not a {kind}")
        yield line, row


def class_names(labels: list[Any], lines: list[int] | None = None, *, where: str) -> list[str]:
    """The sorted class names of `labels` (each label's text), after checking them:
    every row has one, there are at least two, and no two differ only in how they are
    written (`1` and `"1"`, `0` and `0.0`: one class or two by accident). `lines`: the
    line of each label in `where`, for the messages (else its row number)."""

    def at(i: int) -> str:
        return f"{where}:{lines[i]}" if lines else f"{where} row {i}"

    seen: dict[tuple, tuple[Any, int]] = {}
    for i, label in enumerate(labels):
        if label is None:
            raise DataError(f"{at(i)}: the row has no label")
        first, j = seen.setdefault(_label_value(label), (label, i))
        if first != label or type(first) is not type(label):
            raise DataError(
                f"{at(i)}: the label {label!r} and the label {first!r} ({at(j)}) differ "
                "only in how they are written: write each class's label one way"
            )
    names = sorted({str(label) for label in labels})
    if len(names) < 2:
        found = f"only the label {names[0]!r}" if names else "no labels"
        raise DataError(f"{where}: {found}: classification needs at least two classes")
    return names


def _label_value(label: Any) -> tuple:
    """What a label means, apart from how it is written: numbers (and texts that read as
    numbers) by their value."""
    if isinstance(label, bool):
        return ("bool", label)
    if isinstance(label, (int, float)):
        return ("number", float(label))
    try:
        return ("number", float(label))
    except (TypeError, ValueError):
        return ("text", label)
