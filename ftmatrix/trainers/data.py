"""Data: examples in, train/val/test splits out, with class names kept.

Sources: sklearn's bundled digits, an image folder, a CSV/JSONL file of texts, or a
Hugging Face `datasets` dataset (by name or saved with `save_to_disk`). A source gives
a train split and maybe val and test; the missing ones are cut from train, stratified
with `data.split_seed`. `data.limit` keeps a stratified subset of that many examples,
shared among the given splits by their sizes, before anything is decoded.

Images are decoded and resized once, into uint8 tensors; augmentation (torchvision
transforms v2) runs on those tensors per batch. Texts are tokenised once.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from ftmatrix.config import DataConfig, JobConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
SPLITS = ("train", "val", "test")


class DataError(Exception):
    """The data is missing, unreadable or malformed (error class `data_error`)."""


@dataclass
class Split:
    """One split: for images `x` is uint8 (N, 3, H, W); for texts a dict of token ids."""

    x: Any
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    class_names: list[str]
    kind: str  # "image" | "text"


class ImageBatches(Dataset):
    """Index -> (uint8 image, label); augmentation and normalisation happen per batch."""

    def __init__(self, split: Split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        return self.split.x[i], self.split.y[i]


class TextBatches(Dataset):
    def __init__(self, split: Split):
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        return {k: v[i] for k, v in self.split.x.items()}, self.split.y[i]


def load(cfg: JobConfig, *, tokenizer=None) -> Splits:
    """Read the configured data and split it (stratified, seeded by data.split_seed).

    `tokenizer` is the model's; without one, a word-level tokenizer is fitted to the
    training texts."""
    data = cfg.data
    if data.builtin == "digits":
        given, names = _digits(cfg.model.image_size), [str(n) for n in range(10)]
    elif data.hf_dataset is not None:
        given, names = _hf_dataset(cfg)
    else:
        path = Path(data.path)
        if not path.exists():
            raise DataError(f"data.path does not exist: {path}")
        if _is_saved_dataset(path):
            given, names = _hf_dataset(cfg)
        elif cfg.task == "text-classification":
            given, names = _text_file(path, data)
        else:
            given, names = _image_folder(path, size=cfg.model.image_size)
    return _assemble(given, names, cfg=cfg, tokenizer=tokenizer)


# ---------------------------------------------------------------- splitting


def _assemble(given: dict[str, tuple[Any, np.ndarray]], names, *, cfg: JobConfig, tokenizer):
    """given: split -> (examples, labels) as the source has them; examples are a uint8
    image tensor, an array of texts, or a lazy source with `take(indices)`."""
    text = cfg.task == "text-classification"
    plan = _plan({k: y for k, (_, y) in given.items()}, cfg.data)
    taken = {}
    for name, (source, idx) in plan.items():
        x, y = given[source]
        if isinstance(x, _Decoded):
            examples = x.take(idx)
        else:
            examples = x[torch.as_tensor(idx)] if isinstance(x, torch.Tensor) else x[idx]
        taken[name] = (examples, torch.as_tensor(y[idx], dtype=torch.long))
    if text:
        # a fitted vocabulary must fit the embeddings of the model built from its config
        vocab = cfg.model.config.get("vocab_size", FITTED_VOCAB)
        tokenizer = tokenizer or fit_tokenizer(list(taken["train"][0]), vocab_size=vocab)
        taken = {
            k: (_encode(tokenizer, list(x), cfg.model.max_length), y) for k, (x, y) in taken.items()
        }
    parts = [Split(*taken[name]) for name in SPLITS]
    return Splits(*parts, list(names), "text" if text else "image")


def _plan(labels: dict[str, np.ndarray], data: DataConfig) -> dict[str, tuple[str, np.ndarray]]:
    """For each of train/val/test: (the given split it comes from, indices into it)."""
    total = sum(len(y) for y in labels.values())
    keep = {}
    for name, y in labels.items():
        idx = np.arange(len(y))
        if data.limit is not None and data.limit < total:
            share = max(1, round(data.limit * len(y) / total))
            idx = _subset(idx, y, share, data.split_seed)
        keep[name] = idx
    y = labels["train"]
    train = keep["train"]
    plan = {}
    if "test" in keep:
        plan["test"] = ("test", keep["test"])
    else:
        train, test = _cut(train, y, data.test_fraction, data.split_seed)
        plan["test"] = ("train", test)
    if "val" in keep:
        plan["val"] = ("val", keep["val"])
    else:
        # val_fraction is a share of everything, so of the rest when test came out of it
        share = data.val_fraction / (1 - data.test_fraction if "test" not in keep else 1)
        train, val = _cut(train, y, share, data.split_seed)
        plan["val"] = ("train", val)
    plan["train"] = ("train", np.sort(train))
    return {name: plan[name] for name in SPLITS}


def _subset(idx: np.ndarray, y: np.ndarray, n: int, seed: int) -> np.ndarray:
    if n >= len(idx):
        return idx
    kept, _ = _stratified(idx, y, seed=seed, train_size=n)
    return np.sort(kept)


def _cut(idx: np.ndarray, y: np.ndarray, fraction: float, seed: int):
    """(rest, cut): a stratified `fraction` of idx taken out."""
    if fraction <= 0 or len(idx) < 2:
        return idx, idx[:0]
    rest, cut = _stratified(idx, y, seed=seed, test_size=fraction)
    return rest, np.sort(cut)


def _stratified(idx: np.ndarray, y: np.ndarray, *, seed: int, **size):
    """train_test_split, stratified where sklearn can: every class twice, and a part
    big enough to hold every class; otherwise a plain seeded split."""
    _, counts = np.unique(y[idx], return_counts=True)
    if counts.min() >= 2:
        try:
            return train_test_split(idx, stratify=y[idx], random_state=seed, **size)
        except ValueError:  # a part smaller than the number of classes
            pass
    return train_test_split(idx, random_state=seed, **size)


# ---------------------------------------------------------------------- images


def _digits(size: int) -> dict[str, tuple[Any, np.ndarray]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 8x8 greys in 0..16 -> uint8 0..255, three channels like a photo
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    images = _resize(torch.from_numpy(np.repeat(images[:, None], 3, axis=1)), size)
    return {"train": (images, digits.target)}


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, 3, h, w) -> uint8 (N, 3, size, size), in chunks."""
    from torchvision.transforms.v2 import functional as F

    if images.shape[-2:] == (size, size):
        return images
    out = [F.resize(chunk, [size, size], antialias=True) for chunk in images.split(512)]
    return torch.cat(out)


class _Decoded:
    """Images decoded and resized only when taken, so a limit reads only what it keeps."""

    def __init__(self, items: list, size: int, open_image):
        self.items, self.size, self.open_image = items, size, open_image

    def __len__(self) -> int:
        return len(self.items)

    def take(self, idx: np.ndarray) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        out = torch.empty((len(idx), 3, self.size, self.size), dtype=torch.uint8)
        for row, i in enumerate(idx):
            image = F.pil_to_tensor(self.open_image(self.items[i]).convert("RGB"))
            out[row] = F.resize(image, [self.size, self.size], antialias=True)
        return out


def _open_file(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot read image {path}: {err}") from err


def _image_folder(path: Path, *, size: int):
    """train/ val/ test/ subfolders of class folders, or one folder of class folders."""
    given_dirs = {name: path / name for name in SPLITS if (path / name).is_dir()}
    if given_dirs and "train" not in given_dirs:
        raise DataError(f"{path} has {', '.join(given_dirs)}/ but no train/")
    root = given_dirs.get("train", path)
    names = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not names:
        raise DataError(f"{root} has no class folders")
    given = {}
    for split, folder in (given_dirs or {"train": path}).items():
        files, labels = [], []
        for label, name in enumerate(names):
            class_dir = folder / name
            if class_dir.is_dir():
                found = sorted(f for f in class_dir.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
                files += found
                labels += [label] * len(found)
        if not files:
            raise DataError(f"no images under {folder}")
        given[split] = (_Decoded(files, size, _open_file), np.array(labels))
    return given, names


# ----------------------------------------------------------------------- texts


def _text_file(path: Path, data: DataConfig):
    texts, raw = _read_texts(path, data)
    names = sorted({str(label) for label in raw})
    index = {n: i for i, n in enumerate(names)}
    y = np.array([index[str(label)] for label in raw])
    return {"train": (np.array(texts, dtype=object), y)}, names


def _read_texts(path: Path, data: DataConfig) -> tuple[list[str], list[Any]]:
    rows: list[dict[str, Any]]
    try:
        if path.suffix.lower() in (".jsonl", ".json"):
            rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        elif path.suffix.lower() in (".csv", ".tsv"):
            with path.open(newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f, delimiter="\t" if path.suffix == ".tsv" else ","))
        else:
            raise DataError(f"text data must be .csv, .tsv or .jsonl, got {path.name}")
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as err:
        raise DataError(f"cannot parse {path}: {err}") from err
    if not rows:
        raise DataError(f"{path} has no rows")
    for column in (data.text_column, data.label_column):
        if column not in rows[0]:
            raise DataError(f"{path} has no column '{column}' (columns: {', '.join(rows[0])})")
    return [str(r[data.text_column]) for r in rows], [r[data.label_column] for r in rows]


def _encode(tokenizer, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
    if not texts:  # tokenizers refuse an empty batch (an empty val split)
        empty = torch.zeros((0, max_length), dtype=torch.long)
        return {"input_ids": empty, "attention_mask": empty.clone()}
    encoded = tokenizer(
        texts, truncation=True, max_length=max_length, padding="max_length", return_tensors="pt"
    )
    return {k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask")}


FITTED_VOCAB = 30_000  # below the vocab_size of every BERT-like model's default config


def fit_tokenizer(texts: list[str], *, vocab_size: int = FITTED_VOCAB):
    """A word-level tokenizer learned from the training texts (the `vocab_size` most
    frequent words): the offline stand-in when a model is built from its config and its
    own tokenizer is not available."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=specials)
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
    )


# -------------------------------------------------------------------- datasets


def _is_saved_dataset(path: Path) -> bool:
    return path.is_dir() and (
        (path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()
    )


_SPLIT_NAMES = {"train": ("train",), "val": ("validation", "val", "valid"), "test": ("test",)}


def _hf_dataset(cfg: JobConfig):
    """A Hugging Face dataset: its own train/validation/test splits where it has them."""
    import datasets

    data = cfg.data
    if data.hf_dataset is not None:
        ds = datasets.load_dataset(data.hf_dataset, data.hf_config)
    else:
        ds = datasets.load_from_disk(str(data.path))
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    found = {
        ours: next(n for n in theirs if n in ds)
        for ours, theirs in _SPLIT_NAMES.items()
        if any(n in ds for n in theirs)
    }
    if "train" not in found:
        raise DataError(f"the dataset has no train split (splits: {', '.join(ds)})")
    features = ds["train"].features
    label = features.get(data.label_column)
    if label is None:
        raise DataError(f"the dataset has no column '{data.label_column}'")
    class_label = hasattr(label, "names")
    names = (
        list(label.names)
        if class_label
        else sorted({str(v) for split in found.values() for v in ds[split][data.label_column]})
    )
    index = {n: i for i, n in enumerate(names)}
    if cfg.task == "text-classification":
        column = data.text_column
        if column not in features:
            raise DataError(f"the dataset has no column '{column}'")
    else:
        column = next((c for c in ("image", "img", "pixel_values") if c in features), None)
        if column is None:
            raise DataError("an image dataset needs an 'image' column")
    given = {}
    for ours, theirs in found.items():
        split = ds[theirs]
        raw = split[data.label_column]
        y = np.array(raw if class_label else [index[str(v)] for v in raw])
        if cfg.task == "text-classification":
            given[ours] = (np.array(split[column], dtype=object), y)
        else:
            rows = _Rows(split, column)
            given[ours] = (_Decoded(range(len(split)), cfg.model.image_size, rows), y)
    return given, names


class _Rows:
    """Row i of a dataset split -> its PIL image."""

    def __init__(self, split, column: str):
        self.split, self.column = split, column

    def __call__(self, i: int):
        return self.split[int(i)][self.column]
