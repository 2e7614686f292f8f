"""The on-disk data cache: hits read no image, changes and damage rebuild, results are
always those of a fresh decode."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading

import numpy as np
import pytest
import torch
import xxhash
from PIL import Image

from ftmatrix.config import JobConfig
from ftmatrix.trainers import cache, data, tokens
from tests.tiny import write_texts


def image_cfg(path, **data_spec) -> JobConfig:
    return JobConfig.model_validate(
        {
            "task": "image-classification",
            "data": {"path": str(path), **data_spec},
            "model": {"name": "resnet18", "image_size": 16},
        }
    )


def text_cfg(path, max_length=8) -> JobConfig:
    return JobConfig.model_validate(
        {
            "task": "text-classification",
            "data": {"path": str(path)},
            "model": {"name": "google-bert/bert-base-uncased", "max_length": max_length},
        }
    )


@pytest.fixture
def images(tmp_path):
    """12 images in two classes, JPEG and PNG, of other sizes than the model's."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "images"
    for name in ("cat", "dog"):
        (folder / name).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 255, (20 + i, 30, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.{'jpg' if i % 2 else 'png'}")
    return folder


@pytest.fixture
def decodes(monkeypatch):
    """Counts the images read from disk."""
    opened = []
    real = data._open_file

    def counting(path):
        opened.append(path)
        return real(path)

    monkeypatch.setattr(data, "_open_file", counting)
    return opened


def same(a: data.Splits, b: data.Splits) -> None:
    for name in data.SPLITS:
        x, y = getattr(a, name), getattr(b, name)
        assert torch.equal(x.x, y.x) and torch.equal(x.y, y.y)


def entries(root) -> list[str]:
    return sorted(p.name for p in root.iterdir() if not p.name.startswith("."))


def test_the_second_load_reads_only_the_cache(images, tmp_path, monkeypatch):
    root = tmp_path / "cache"
    fresh = data.load(image_cfg(images))
    first = data.load(image_cfg(images), cache_dir=root)
    same(first, fresh)
    [entry] = entries(root)
    assert entry.startswith("image-16px-12-")
    manifest = json.loads((root / entry / cache.MANIFEST).read_text())
    assert manifest["arrays"]["images"]["shape"] == [12, 3, 16, 16]

    def no_decoding(path):
        raise AssertionError(f"decoded {path} despite the cache")

    monkeypatch.setattr(data, "_open_file", no_decoding)
    second = data.load(image_cfg(images), cache_dir=root)
    same(second, fresh)
    assert (len(second.train), len(second.val), len(second.test)) == (7, 2, 3)
    # the entry holds every file in order, decoded and resized as torchvision does it
    from torchvision.transforms.v2 import functional as F

    stored = torch.from_numpy(cache.lookup(root, entry)["images"])
    for row, file in ((0, "cat/0.png"), (7, "dog/1.jpg")):
        image = F.pil_to_tensor(Image.open(images / file).convert("RGB"))
        assert torch.equal(stored[row], F.resize(image, [16, 16], antialias=True))
    # other split settings share the entry: it holds the whole folder
    other = data.load(image_cfg(images, split_seed=3, val_fraction=0.3), cache_dir=root)
    assert len(other.val) == 4 and entries(root) == [entry]


@pytest.mark.parametrize("change", ["content", "mtime"])
def test_a_changed_file_changes_the_key_and_rebuilds(images, tmp_path, decodes, change):
    root = tmp_path / "cache"
    data.load(image_cfg(images, test_fraction=0, val_fraction=0), cache_dir=root)
    target = images / "dog" / "0.png"
    if change == "content":
        Image.new("RGB", (30, 20), (255, 0, 0)).save(target)
    else:
        st = target.stat()
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    decodes.clear()
    splits = data.load(image_cfg(images, test_fraction=0, val_fraction=0), cache_dir=root)
    assert len(decodes) == 12 and len(entries(root)) == 2
    same(splits, data.load(image_cfg(images, test_fraction=0, val_fraction=0)))
    if change == "content":  # the red square is row 6 (cat 0-5, then dog 0)
        assert splits.train.x[6, :, 8, 8].tolist() == [255, 0, 0]


def damage_truncate(entry):
    path = entry / "images.npy"
    path.write_bytes(path.read_bytes()[:-100])


def damage_flip(entry):
    path = entry / "images.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # same size, one pixel off: only the checksum sees it
    path.write_bytes(bytes(raw))


def damage_manifest(entry):
    (entry / cache.MANIFEST).unlink()


def damage_shape(entry):
    manifest = json.loads((entry / cache.MANIFEST).read_text())
    manifest["arrays"]["images"]["shape"] = [11, 3, 16, 16]
    (entry / cache.MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize("damage", [damage_truncate, damage_flip, damage_manifest, damage_shape])
def test_a_damaged_entry_is_never_used_but_rebuilt(images, tmp_path, decodes, damage):
    root = tmp_path / "cache"
    fresh = data.load(image_cfg(images))
    data.load(image_cfg(images), cache_dir=root)
    [entry] = entries(root)
    damage(root / entry)
    assert cache.lookup(root, entry) is None
    decodes.clear()
    same(data.load(image_cfg(images), cache_dir=root), fresh)
    assert len(decodes) == 12  # rebuilt from the files
    assert entries(root) == [entry] and cache.lookup(root, entry) is not None
    decodes.clear()
    same(data.load(image_cfg(images), cache_dir=root), fresh)
    assert decodes == []


def test_an_entry_is_checked_by_xxh3_and_an_entry_of_the_sha256_format_is_rebuilt(
    images, tmp_path, decodes
):
    root = tmp_path / "cache"
    fresh = data.load(image_cfg(images))
    data.load(image_cfg(images), cache_dir=root)
    [entry] = entries(root)
    manifest = json.loads((root / entry / cache.MANIFEST).read_text())
    meta = manifest["arrays"]["images"]
    pixels = (root / entry / "images.npy").read_bytes()[-meta["bytes"] :]
    assert manifest["format"] == cache.FORMAT == 2
    assert meta["xxh3_128"] == xxhash.xxh3_128_hexdigest(pixels)
    assert meta["bytes"] == 12 * 3 * 16 * 16
    decodes.clear()
    same(data.load(image_cfg(images), cache_dir=root), fresh)
    assert decodes == []  # verified, used
    # the same entry as format 1 wrote it (sha256): never trusted, rebuilt
    old = {k: v for k, v in meta.items() if k != "xxh3_128"}
    old["sha256"] = hashlib.sha256(pixels).hexdigest()
    manifest.update(format=1, arrays={"images": old})
    (root / entry / cache.MANIFEST).write_text(json.dumps(manifest))
    assert cache.lookup(root, entry) is None
    same(data.load(image_cfg(images), cache_dir=root), fresh)
    assert len(decodes) == 12
    rebuilt = json.loads((root / entry / cache.MANIFEST).read_text())
    assert rebuilt["format"] == 2 and rebuilt["arrays"]["images"]["xxh3_128"] == meta["xxh3_128"]
    # a checksum that disagrees with the bytes: not used
    rebuilt["arrays"]["images"]["xxh3_128"] = "0" * 32
    (root / entry / cache.MANIFEST).write_text(json.dumps(rebuilt))
    assert cache.lookup(root, entry) is None


def test_a_limit_decodes_only_what_it_keeps_or_uses_the_whole_entry(images, tmp_path, decodes):
    root = tmp_path / "cache"
    limited = data.load(image_cfg(images, limit=6), cache_dir=root)
    assert len(decodes) == 6 and entries(root)[0].startswith("image-16px-6-")
    same(limited, data.load(image_cfg(images, limit=6)))
    data.load(image_cfg(images), cache_dir=root)  # the whole folder: a second entry
    decodes.clear()
    again = data.load(image_cfg(images, limit=6), cache_dir=root)
    assert decodes == []
    same(again, limited)


def test_a_killed_build_leaves_nothing_and_the_next_build_succeeds(tmp_path):
    root = tmp_path / "cache"

    def dies(alloc):
        alloc("x", (4,), np.int64)[:2] = 7
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.cached(root, "k", dies)
    assert list(root.glob("k*")) == [] and list(root.glob(".tmp-*")) == []

    def fills(alloc):
        alloc("x", (4,), np.int64)[:] = [1, 2, 3, 4]

    assert cache.cached(root, "k", fills)["x"].tolist() == [1, 2, 3, 4]
    # what a reader gets is copy-on-write: writing to it leaves the cache intact
    got = cache.cached(root, "k", fills)["x"]
    got[0] = 99
    assert cache.lookup(root, "k")["x"].tolist() == [1, 2, 3, 4]


def test_two_builders_of_one_key_fill_it_once(tmp_path):
    root, calls, results = tmp_path / "cache", [], []

    def fill(alloc):
        calls.append(1)
        threading.Event().wait(0.2)  # long enough for the other to queue on the lock
        alloc("x", (3, 2), np.uint8)[:] = 5

    threads = [
        threading.Thread(target=lambda: results.append(cache.cached(root, "k", fill)["x"]))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and [r.sum() for r in results] == [30, 30]


def test_an_unwritable_cache_falls_back_to_memory(images, tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING, logger="ftmatrix.trainers.cache"):
        splits = data.load(image_cfg(images), cache_dir=blocker / "cache")
    same(splits, data.load(image_cfg(images)))
    assert "not usable" in caplog.text


def test_token_ids_are_cached_per_texts_tokenizer_and_length(tmp_path, monkeypatch):
    path = write_texts(tmp_path)
    root = tmp_path / "cache"
    fresh = data.load(text_cfg(path))
    first = data.load(text_cfg(path), cache_dir=root)
    assert sorted(e.split("-")[1] for e in entries(root)) == ["8tok"] * 3  # train, val, test
    real = tokens.tokenize

    def no_tokenizing(tokenizer, texts, max_length):
        raise AssertionError("tokenised despite the cache")

    monkeypatch.setattr(tokens, "tokenize", no_tokenizing)
    second = data.load(text_cfg(path), cache_dir=root)
    for name in data.SPLITS:
        for key in ("input_ids", "attention_mask"):
            a, b, c = (getattr(s, name).x[key] for s in (fresh, first, second))
            assert torch.equal(a, b) and torch.equal(a, c)
    assert second.train.x["input_ids"].shape == (56, 8)
    assert second.train.x["attention_mask"].sum() > 56 * 4  # real tokens, not padding
    # another length, or another tokenizer, is another entry
    monkeypatch.setattr(tokens, "tokenize", real)
    data.load(text_cfg(path, max_length=12), cache_dir=root)
    texts = [line.split(",")[0] for line in path.read_text().splitlines()[1:]]
    small = tokens.fit_tokenizer(texts, vocab_size=20)
    data.load(text_cfg(path), tokenizer=small, cache_dir=root)
    assert len(entries(root)) == 9


def test_the_cache_lives_in_the_runs_root_unless_told(tmp_path, monkeypatch):
    monkeypatch.delenv(cache.ENV, raising=False)
    job = tmp_path / "runs" / "study" / "abc123"
    assert cache.default_dir(job) == tmp_path / "runs" / ".cache" / "data"
    monkeypatch.setenv(cache.ENV, str(tmp_path / "elsewhere"))
    assert cache.default_dir(job) == tmp_path / "elsewhere"
    monkeypatch.setenv(cache.ENV, "off")
    assert cache.default_dir(job) is None


def test_the_loader_slices_batches_unless_workers_are_asked_for():
    from ftmatrix.trainers import loop
    from ftmatrix.trainers.data import Split

    split = Split(x=torch.arange(10).view(10, 1), y=torch.arange(10))
    sliced = loop.loader(split, kind="image", batch_size=4)
    assert sliced.num_workers == 0 and sliced.batch_size is None  # whole slices, no collate
    assert [len(y) for _x, y in sliced] == [4, 4, 2]
    workers = loop.loader(split, kind="image", batch_size=4, shuffle_seed=1, workers=1)
    assert workers.num_workers == 1 and workers.persistent_workers
    assert sorted(torch.cat([y for _x, y in workers]).tolist()) == list(range(10))
