"""Data sources and splits: image folders, text files, saved datasets, limits."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from ftmatrix.config import JobConfig
from ftmatrix.trainers import data


def cfg(**data_spec) -> JobConfig:
    task = data_spec.pop("task", "image-classification")
    model = (
        {"name": "resnet18", "image_size": 24}
        if task.startswith("image")
        else {"name": "google-bert/bert-base-uncased", "max_length": 8}
    )
    return JobConfig.model_validate({"task": task, "data": data_spec, "model": model})


def draw(folder, classes: dict[str, int], size=(40, 30)) -> None:
    rng = np.random.default_rng(0)
    for name, n in classes.items():
        (folder / name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")


def test_digits_are_split_stratified_and_resized():
    splits = data.load(cfg(builtin="digits", limit=500))
    assert splits.class_names == [str(d) for d in range(10)]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (350, 50, 100)
    assert splits.train.x.shape[1:] == (3, 24, 24) and splits.train.x.dtype == torch.uint8
    counts = Counter(splits.test.y.tolist())
    assert min(counts.values()) >= 9 and max(counts.values()) <= 11  # stratified


def test_an_image_folder_with_train_val_test(tmp_path):
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        draw(tmp_path / split, {"cat": n, "dog": n})
    splits = data.load(cfg(path=str(tmp_path)))
    assert splits.class_names == ["cat", "dog"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 4, 6)
    assert splits.test.x.shape[1:] == (3, 24, 24)


def test_one_image_folder_is_split_by_fractions(tmp_path):
    draw(tmp_path, {"a": 10, "b": 10})
    splits = data.load(cfg(path=str(tmp_path), val_fraction=0.1, test_fraction=0.2))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (14, 2, 4)
    assert sorted(splits.test.y.tolist()) == [0, 0, 1, 1]


def test_a_broken_image_is_a_data_error(tmp_path):
    draw(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "a" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(data.DataError, match=r"bad\.png"):
        data.load(cfg(path=str(tmp_path)))


def test_jsonl_texts_with_named_columns(tmp_path):
    path = tmp_path / "t.jsonl"
    rows = [{"body": f"text number {i}", "topic": ["x", "y"][i % 2]} for i in range(30)]
    path.write_text("\n".join(json.dumps(r) for r in rows))
    splits = data.load(
        cfg(task="text-classification", path=str(path), text_column="body", label_column="topic")
    )
    assert splits.class_names == ["x", "y"] and splits.kind == "text"
    assert splits.train.x["input_ids"].shape[1] == 8
    assert len(splits.train) + len(splits.val) + len(splits.test) == 30


def test_a_missing_text_column_names_the_columns(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("sentence,label\nhello,a\n")
    with pytest.raises(data.DataError, match=r"no column 'text'.*sentence, label"):
        data.load(cfg(task="text-classification", path=str(path)))


def test_a_dataset_saved_to_disk_keeps_its_splits(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    make = lambda n: datasets.Dataset.from_dict(  # noqa: E731
        {"text": [f"review {i}" for i in range(n)], "label": [i % 2 for i in range(n)]},
        features=features,
    )
    datasets.DatasetDict({"train": make(20), "validation": make(4), "test": make(6)}).save_to_disk(
        str(tmp_path / "ds")
    )
    splits = data.load(cfg(task="text-classification", path=str(tmp_path / "ds")))
    assert splits.class_names == ["neg", "pos"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 4, 6)


def test_a_dataset_with_train_and_test_cuts_val_from_train(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = {"text": [f"review {i}" for i in range(30)], "label": ["a", "b", "c"] * 10}
    ds = datasets.Dataset.from_dict(rows)
    given = {"train": ds.select(range(20)), "test": ds.select(range(20, 30))}
    datasets.DatasetDict(given).save_to_disk(str(tmp_path / "ds"))
    spec = cfg(task="text-classification", path=str(tmp_path / "ds"), val_fraction=0.25)
    splits = data.load(spec)
    assert splits.class_names == ["a", "b", "c"]
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 5, 10)
    # val came out of train: together they are train's 20 labels, the test split is untouched
    assert Counter(splits.train.y.tolist() + splits.val.y.tolist()) == {0: 7, 1: 7, 2: 6}
    assert splits.test.y.tolist() == [2, 0, 1, 2, 0, 1, 2, 0, 1, 2]


def test_limit_shares_a_stratified_subset_among_given_splits_and_decodes_only_it(
    tmp_path, monkeypatch
):
    for split, n in (("train", 10), ("val", 3), ("test", 7)):
        draw(tmp_path / split, {"cat": n, "dog": n})
    opened = []
    real_open = data._open_file
    monkeypatch.setattr(data, "_open_file", lambda path: opened.append(path) or real_open(path))
    splits = data.load(cfg(path=str(tmp_path), limit=20))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (10, 3, 7)
    assert sorted(splits.train.y.tolist()) == [0] * 5 + [1] * 5
    assert len(opened) == 20 and len(set(opened)) == 20


def test_an_empty_validation_split_of_texts(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("text,label\n" + "".join(f"words {i},{'xy'[i % 2]}\n" for i in range(20)))
    splits = data.load(cfg(task="text-classification", path=str(path), val_fraction=0))
    assert len(splits.val) == 0 and splits.val.x["input_ids"].shape == (0, 8)
    assert (len(splits.train), len(splits.test)) == (16, 4)


def test_an_image_dataset_saved_to_disk_is_split_and_resized(tmp_path):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)) for _ in range(20)]
    features = datasets.Features(
        {"image": datasets.Image(), "label": datasets.ClassLabel(names=["left", "right"])}
    )
    ds = datasets.Dataset.from_dict({"image": images, "label": [0, 1] * 10}, features=features)
    ds.save_to_disk(str(tmp_path / "ds"))
    splits = data.load(cfg(path=str(tmp_path / "ds"), val_fraction=0.1, test_fraction=0.2))
    assert splits.class_names == ["left", "right"] and splits.kind == "image"
    assert (len(splits.train), len(splits.val), len(splits.test)) == (14, 2, 4)
    assert splits.train.x.shape == (14, 3, 24, 24) and splits.train.x.dtype == torch.uint8
    # every example is one source image resized, with its label: all 20, once each
    from torchvision.transforms.v2 import functional as F

    resized = [F.resize(F.pil_to_tensor(im), [24, 24], antialias=True) for im in images]
    found = []
    for split in (splits.train, splits.val, splits.test):
        for x, y in zip(split.x, split.y.tolist(), strict=True):
            (i,) = [i for i, r in enumerate(resized) if torch.equal(r, x)]
            assert y == i % 2
            found.append(i)
    assert sorted(found) == list(range(20))
