"""Data: examples in, train/val/test splits out, with class names kept.

Sources: sklearn's bundled digits, an image folder, a CSV/JSONL file of texts, or a
Hugging Face `datasets` dataset (by name or saved with `save_to_disk`). A source gives
a train split and maybe val and test; the missing ones are cut from train, stratified
with `data.split_seed`. `data.limit` keeps a stratified subset of that many examples,
shared among the given splits by their sizes, before anything is decoded. What a
folder or a text file holds (layout, rows, class names) is read and checked by
`sources`; every problem is a `DataError` (data_error) naming the file and line.

Images are decoded and resized once, into uint8 tensors; augmentation
(`augment.BatchAugment`) runs on those tensors per batch, on the device. Texts are
tokenised once. With a `cache_dir` both are kept on disk for later jobs (see `cache`):
images per (files with their sizes and mtimes, image size), texts per (texts,
tokenizer, max_length).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from ftmatrix.config import DataConfig, JobConfig
from ftmatrix.trainers import cache, own_data, sources, tokens
from ftmatrix.trainers.sources import SPLITS, DataError


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


def load(cfg: JobConfig, *, tokenizer=None, cache_dir: Path | None = None) -> Splits:
    """Read the configured data and split it (stratified, seeded by data.split_seed).

    `tokenizer` is the model's; without one, a word-level tokenizer is fitted to the
    training texts. `cache_dir`: where decoded images and token ids are kept across
    jobs (None: nowhere; digits, tiny and in memory already, are never cached)."""
    data = cfg.data
    if data.factory is not None:  # your own data, used as given (own_data.py)
        given, names = own_data.load(data.factory, data.config)
    elif data.builtin == "digits":
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
    return _assemble(given, names, cfg=cfg, tokenizer=tokenizer, cache_dir=cache_dir)


# ---------------------------------------------------------------- splitting


def _assemble(
    given: dict[str, tuple[Any, np.ndarray]], names, *, cfg: JobConfig, tokenizer, cache_dir
):
    """given: split -> (examples, labels) as the source has them; examples are a uint8
    image tensor, an array of texts, or a lazy `_Decoded` source."""
    text = cfg.task == "text-classification"
    plan = _plan({k: y for k, (_, y) in given.items()}, cfg.data)
    _check_classes(plan, labels={k: y for k, (_, y) in given.items()}, names=names, data=cfg.data)
    # each lazy source is decoded once, for all the splits cut from it
    rows: dict[str, np.ndarray] = {}
    for source, idx in plan.values():
        rows[source] = np.union1d(rows.get(source, idx[:0]), idx)
    decoded = {
        source: given[source][0].decode(wanted, cache_dir=cache_dir)
        for source, wanted in rows.items()
        if isinstance(given[source][0], _Decoded)
    }
    taken = {}
    for name, (source, idx) in plan.items():
        x, y = given[source]
        if source in decoded:
            examples = _select(decoded[source], np.searchsorted(rows[source], idx))
        else:
            examples = x[torch.as_tensor(idx)] if isinstance(x, torch.Tensor) else x[idx]
        taken[name] = (examples, torch.as_tensor(y[idx], dtype=torch.long))
    if text:
        # a fitted vocabulary must fit the embeddings of the model built from its config
        vocab = cfg.model.config.get("vocab_size", tokens.FITTED_VOCAB)
        tokenizer = tokenizer or tokens.fit_tokenizer(list(taken["train"][0]), vocab_size=vocab)
        length = cfg.model.max_length
        tok = tokens.identity(tokenizer) if cache_dir is not None else []
        taken = {
            k: (
                tokens.encode(tokenizer, list(x), max_length=length, cache_dir=cache_dir, tok=tok),
                y,
            )
            for k, (x, y) in taken.items()
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


def _check_classes(
    plan: dict[str, tuple[str, np.ndarray]],
    *,
    labels: dict[str, np.ndarray],
    names: list[str],
    data: DataConfig,
) -> None:
    """Every class that validation or test holds must have training examples: a model
    cannot learn a class it never sees, and its score there would say nothing."""
    source, idx = plan["train"]
    trained = set(np.unique(labels[source][idx]).tolist())
    for split in ("val", "test"):
        source, idx = plan[split]
        unseen = sorted(set(np.unique(labels[source][idx]).tolist()) - trained)
        if unseen:
            where = data.builtin or data.hf_dataset or data.path
            shown = ", ".join(repr(names[i]) for i in unseen[:5])
            more = f" and {len(unseen) - 5} more" if len(unseen) > 5 else ""
            cut = "" if source == split else " (a class needs 2 examples to be in both)"
            raise DataError(
                f"{where}: the {split} split has classes without a training example: "
                f"{shown}{more}{cut}"
            )


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
    """Images decoded and resized only when asked for, so a limit reads only what it
    keeps. `identify(item)` names an item's content (a file's path, size and mtime)
    for the cache key."""

    def __init__(self, items, *, size: int, open_image, identify):
        self.items, self.size = items, size
        self.open_image, self.identify = open_image, identify

    def __len__(self) -> int:
        return len(self.items)

    def decode(self, rows: np.ndarray, *, cache_dir: Path | None) -> np.ndarray:
        """uint8 (len(rows), 3, size, size) for the sorted `rows`.

        Cached per set of rows: all of them without a limit, so that every split seed
        and fraction shares one entry; under a limit only the kept ones (a quick run on
        a big dataset must not decode all of it), unless all of them are cached
        already."""
        stamps = [self.identify(item) for item in self.items] if cache_dir else [None]
        if None in stamps:  # no cache, or content that cannot be named
            return cache.cached(None, "", lambda alloc: self._fill(rows, alloc))["images"]
        if len(rows) < len(self.items):
            whole = cache.lookup(cache_dir, self._key(stamps))
            if whole is not None:
                return whole["images"][rows]
            stamps = [stamps[i] for i in rows]
        entry = cache.cached(cache_dir, self._key(stamps), lambda alloc: self._fill(rows, alloc))
        return entry["images"]

    def _key(self, stamps: list[str]) -> str:
        import PIL
        import torchvision

        # the decoder's versions too: a new resize kernel gives other pixels
        about = ["image", str(self.size), torchvision.__version__, PIL.__version__]
        return f"image-{self.size}px-{len(stamps)}-{cache.fingerprint(about + stamps)[:32]}"

    def _fill(self, rows: np.ndarray, alloc: cache.Alloc) -> None:
        from torchvision.transforms.v2 import functional as F

        out = alloc("images", (len(rows), 3, self.size, self.size), np.uint8)

        def one(row: int) -> None:
            image = F.pil_to_tensor(self.open_image(self.items[rows[row]]).convert("RGB"))
            out[row] = F.resize(image, [self.size, self.size], antialias=True).numpy()

        # PIL and torch release the GIL while they decode and resize: threads use every
        # core (1.5x on two) without the pickling of worker processes
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            try:
                for _ in pool.map(one, range(len(rows))):  # re-raises a worker's error
                    pass
            except BaseException:
                pool.shutdown(cancel_futures=True)  # an unreadable image stops it now
                raise


def _select(images: np.ndarray, positions: np.ndarray) -> torch.Tensor:
    """images[positions] as a tensor: a view when the positions are one run (a whole
    cached split stays mapped, not copied), else a copy."""
    if len(positions) and positions[-1] - positions[0] + 1 == len(positions):
        return torch.from_numpy(images[positions[0] : positions[-1] + 1])
    return torch.from_numpy(images[positions])


def _open_file(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return img
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot read image {path}: {err}") from err


def _image_folder(path: Path, *, size: int):
    layout, names = sources.image_folder(path)
    given = {
        split: (
            _Decoded(files, size=size, open_image=_open_file, identify=cache.file_stamp),
            labels,
        )
        for split, (files, labels) in layout.items()
    }
    return given, names


def _text_file(path: Path, data: DataConfig):
    texts, y, names = sources.text_file(path, data)
    return {"train": (np.array(texts, dtype=object), y)}, names


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
    where = data.hf_dataset or str(data.path)
    if class_label:
        names = list(label.names)
        if len(names) < 2:
            raise DataError(f"{where}: the label has {len(names)} class: classification needs two")
    else:
        every = [v for split in found.values() for v in ds[split][data.label_column]]
        names = sources.class_names(every, where=f"{where} ('{data.label_column}')")
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
            decoded = _Decoded(
                range(len(split)),
                size=cfg.model.image_size,
                open_image=rows,
                identify=rows.identify,
            )
            given[ours] = (decoded, y)
    return given, names


class _Rows:
    """Row i of a dataset split -> its PIL image."""

    def __init__(self, split, column: str):
        self.split, self.column = split, column
        self._content: str | None = None

    def __call__(self, i: int):
        return self.split[int(i)][self.column]

    def identify(self, i: int) -> str | None:
        """Row i's content: the split's datasets fingerprint (a hash of its source and
        every transform applied), its Arrow files' stamps, the column and the row."""
        if self._content is None:
            files = [cache.file_stamp(f["filename"]) for f in self.split.cache_files]
            fingerprint = getattr(self.split, "_fingerprint", None)
            if fingerprint is None:
                return None
            self._content = cache.fingerprint([fingerprint, self.column, *files])
        return f"{self._content}:{i}"
