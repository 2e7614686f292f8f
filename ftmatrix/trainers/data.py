"""Data: examples in, train/val/test splits out, with class names kept.

Sources: sklearn's bundled digits, an image folder, a CSV/JSONL file of texts, or a
Hugging Face `datasets` dataset (by name or saved with `save_to_disk`). Images are
decoded and resized once, into uint8 tensors; augmentation (torchvision transforms v2)
runs on those tensors per batch. Texts are tokenised once.
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
    """Read the configured data and split it (stratified, seeded by data.split_seed)."""
    data = cfg.data
    size = cfg.model.image_size
    if data.builtin == "digits":
        images, labels, names = _digits()
        return _split_arrays(images, labels, names, data=data, size=size, kind="image")
    if data.hf_dataset is not None:
        return _hf_dataset(cfg, tokenizer=tokenizer)
    path = Path(data.path)
    if not path.exists():
        raise DataError(f"data.path does not exist: {path}")
    if cfg.task == "text-classification":
        if path.is_dir() and _is_saved_dataset(path):
            return _hf_dataset(cfg, tokenizer=tokenizer)
        texts, labels = _read_texts(path, data)
        names = sorted({str(label) for label in labels})
        index = {n: i for i, n in enumerate(names)}
        y = np.array([index[str(label)] for label in labels])
        return _split_texts(np.array(texts, dtype=object), y, names, cfg=cfg, tokenizer=tokenizer)
    if _is_saved_dataset(path):
        return _hf_dataset(cfg, tokenizer=tokenizer)
    return _image_folder(path, data=data, size=size)


# ---------------------------------------------------------------------- images


def _digits() -> tuple[np.ndarray, np.ndarray, list[str]]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 8x8 greys in 0..16 -> uint8 0..255, three channels like a photo
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    images = np.repeat(images[:, None], 3, axis=1)
    return images, digits.target, [str(n) for n in digits.target_names]


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N, 3, h, w) -> uint8 (N, 3, size, size), once for the whole dataset."""
    from torchvision.transforms.v2 import functional as F

    if images.shape[-2:] == (size, size):
        return images
    out = [F.resize(chunk, [size, size], antialias=True) for chunk in images.split(512)]
    return torch.cat(out)


def _image_folder(path: Path, *, data: DataConfig, size: int) -> Splits:
    subsets = {name: path / name for name in ("train", "val", "test") if (path / name).is_dir()}
    if "train" in subsets:
        names = sorted(p.name for p in subsets["train"].iterdir() if p.is_dir())
        if not names:
            raise DataError(f"{subsets['train']} has no class folders")
        loaded = {k: _read_images(v, names, size) for k, v in subsets.items()}
        train = loaded["train"]
        if "val" not in loaded or "test" not in loaded:
            # the missing splits are cut from train, stratified
            rest = _split_arrays(train[0], train[1], names, data=data, size=size, kind="image")
            val = loaded.get("val") or (rest.val.x, rest.val.y)
            test = loaded.get("test") or (rest.test.x, rest.test.y)
            train = (rest.train.x, rest.train.y)
        else:
            val, test = loaded["val"], loaded["test"]
        return Splits(
            Split(*_tensors(train)), Split(*_tensors(val)), Split(*_tensors(test)), names, "image"
        )
    names = sorted(p.name for p in path.iterdir() if p.is_dir())
    if not names:
        raise DataError(f"{path} has neither train/ val/ test/ nor class folders")
    images, labels = _read_images(path, names, size)
    return _split_arrays(images, labels, names, data=data, size=size, kind="image")


def _tensors(pair):
    x, y = pair
    return torch.as_tensor(x), torch.as_tensor(y, dtype=torch.long)


def _read_images(root: Path, names: list[str], size: int) -> tuple[torch.Tensor, np.ndarray]:
    """Decode and resize every image of root/<class>/ once."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2 import functional as F

    images, labels = [], []
    for label, name in enumerate(names):
        folder = root / name
        if not folder.is_dir():
            continue
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(file) as img:
                    tensor = F.pil_to_tensor(img.convert("RGB"))
            except (OSError, UnidentifiedImageError) as err:
                raise DataError(f"cannot read image {file}: {err}") from err
            images.append(F.resize(tensor, [size, size], antialias=True))
            labels.append(label)
    if not images:
        raise DataError(f"no images under {root}")
    return torch.stack(images), np.array(labels)


def _split_indices(y: np.ndarray, data: DataConfig) -> tuple[np.ndarray, ...]:
    """Stratified limit, then test and val cut off with a fixed seed."""
    idx = np.arange(len(y))
    seed = data.split_seed
    if data.limit is not None and data.limit < len(y):
        idx, _ = train_test_split(idx, train_size=data.limit, stratify=y, random_state=seed)
        idx = np.sort(idx)
    strat = y[idx] if np.min(np.bincount(y[idx])) >= 2 else None
    if data.test_fraction > 0:
        rest, test = train_test_split(
            idx, test_size=data.test_fraction, stratify=strat, random_state=seed
        )
    else:
        rest, test = idx, idx[:0]
    val_share = data.val_fraction / (1 - data.test_fraction)
    if data.val_fraction > 0:
        strat = y[rest] if np.min(np.bincount(y[rest])) >= 2 else None
        train, val = train_test_split(rest, test_size=val_share, stratify=strat, random_state=seed)
    else:
        train, val = rest, rest[:0]
    return np.sort(train), np.sort(val), np.sort(test)


def _split_arrays(images, labels, names, *, data: DataConfig, size: int, kind: str) -> Splits:
    y = np.asarray(labels)
    train, val, test = _split_indices(y, data)
    x = _resize(torch.as_tensor(np.asarray(images)), size)
    yt = torch.as_tensor(y, dtype=torch.long)
    part = {n: Split(x[i], yt[i]) for n, i in (("train", train), ("val", val), ("test", test))}
    return Splits(part["train"], part["val"], part["test"], list(names), kind)


# ----------------------------------------------------------------------- texts


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


def _split_texts(texts, y, names, *, cfg: JobConfig, tokenizer) -> Splits:
    train, val, test = _split_indices(y, cfg.data)
    tokenizer = tokenizer or fit_tokenizer(list(texts[train]))
    parts = {}
    for name, idx in (("train", train), ("val", val), ("test", test)):
        encoded = tokenizer(
            list(texts[idx]),
            truncation=True,
            max_length=cfg.model.max_length,
            padding="max_length",
            return_tensors="pt",
        )
        x = {k: v for k, v in encoded.items() if k in ("input_ids", "attention_mask")}
        parts[name] = Split(x, torch.as_tensor(y[idx], dtype=torch.long))
    return Splits(parts["train"], parts["val"], parts["test"], list(names), "text")


def fit_tokenizer(texts: list[str]):
    """A word-level tokenizer learned from the training texts: the offline stand-in
    when a model is built from its config and its own tokenizer is not available."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=specials))
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


def _hf_dataset(cfg: JobConfig, *, tokenizer) -> Splits:
    """A Hugging Face dataset: its own train/validation/test splits where it has them."""
    import datasets

    data = cfg.data
    if data.hf_dataset is not None:
        ds = datasets.load_dataset(data.hf_dataset, data.hf_config)
    else:
        ds = datasets.load_from_disk(str(data.path))
    if isinstance(ds, datasets.Dataset):
        ds = datasets.DatasetDict({"train": ds})
    features = ds["train"].features
    label = features.get(data.label_column)
    if label is None:
        raise DataError(f"the dataset has no column '{data.label_column}'")
    names = list(
        getattr(label, "names", None) or sorted({str(v) for v in ds["train"][data.label_column]})
    )
    index = {n: i for i, n in enumerate(names)}

    def labels(split) -> np.ndarray:
        raw = split[data.label_column]
        return np.array(
            [v if isinstance(v, int) and hasattr(label, "names") else index[str(v)] for v in raw]
        )

    if cfg.task == "text-classification":
        column = data.text_column
        texts = {k: np.array(v[column], dtype=object) for k, v in ds.items()}
    else:
        column = next((c for c in ("image", "img", "pixel_values") if c in features), None)
        if column is None:
            raise DataError("an image dataset needs an 'image' column")
        texts = None
    if set(ds) >= {"train", "test"}:
        val_name = next((n for n in ("validation", "val", "valid") if n in ds), None)
        split_y = {k: labels(ds[k]) for k in ds}
        if cfg.task == "text-classification":
            tok = tokenizer or fit_tokenizer(list(texts["train"]))
            parts = {}
            for name, key in (("train", "train"), ("val", val_name), ("test", "test")):
                key = key or "test"
                enc = tok(
                    list(texts[key]),
                    truncation=True,
                    max_length=cfg.model.max_length,
                    padding="max_length",
                    return_tensors="pt",
                )
                x = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
                parts[name] = Split(x, torch.as_tensor(split_y[key], dtype=torch.long))
            return Splits(parts["train"], parts["val"], parts["test"], names, "text")
        from torchvision.transforms.v2 import functional as F

        def images(split) -> torch.Tensor:
            size = cfg.model.image_size
            return torch.stack(
                [
                    F.resize(F.pil_to_tensor(im.convert("RGB")), [size, size], antialias=True)
                    for im in split[column]
                ]
            )

        parts = {
            n: Split(images(ds[k or "test"]), torch.as_tensor(split_y[k or "test"]))
            for n, k in (("train", "train"), ("val", val_name), ("test", "test"))
        }
        return Splits(parts["train"], parts["val"], parts["test"], names, "image")
    y = labels(ds["train"])
    if cfg.task == "text-classification":
        return _split_texts(texts["train"], y, names, cfg=cfg, tokenizer=tokenizer)
    raw = [
        np.asarray(im.convert("RGB").resize((cfg.model.image_size,) * 2)).transpose(2, 0, 1)
        for im in ds["train"][column]
    ]
    return _split_arrays(
        np.stack(raw), y, names, data=data, size=cfg.model.image_size, kind="image"
    )
