"""The data cache: decoded images and tokenised texts kept on disk across jobs.

Decoding JPEGs costs far more than training a small model on them, and every job of a
matrix (every learning rate, every seed) reads the same images at the same size. So
the arrays a job derives from its data are written once, as `.npy` files, and later
jobs map them into memory (`np.load(mmap_mode="c")`: pages come from the OS page
cache, shared by jobs running side by side; writes stay private to the process).

Where: `$FTMATRIX_CACHE` if set (`off` turns the cache off), else `.cache/data` in the
runs root: a job runs in `runs/<matrix>/<job-id>/`, so that is `runs/.cache/data/`,
shared by every matrix. (Matrix names cannot start with a dot, and `status`/`report`
only count folders holding a config.json, so the folder is never taken for a study.)

An entry is a folder `<key>/` holding one `.npy` per array and `manifest.json` (shape,
dtype, byte length and xxh3_128 checksum of each array). Every job checks the whole
entry when it opens it; xxh3 (xxhash) does that 7-9x faster than sha256 did (cache
format 1), which took about half of a later job's first epoch on cached images
(benchmarks/data_speed.py). A checksum catches damage, not tampering: the cache is a
folder of the user's own. The key is a hash of everything the
arrays depend on (file names, sizes and mtimes, image size, tokenizer, ...), so a
changed dataset is a new key; the caller chooses what goes into it.

Safety: an entry is built in a temporary folder and renamed into place only once its
files are fsynced and its manifest written, so a killed build leaves no entry, only a
temporary folder that the next build of that key removes. An entry whose manifest is
missing or whose files disagree with it (size, shape, dtype, checksum) is never used:
it is removed and rebuilt. Builders of one key take a kernel lock (`fcntl.flock`,
released when a process dies), so two jobs starting together decode once: the second
waits and reads what the first wrote. When the cache folder cannot be written (a
read-only file system, a full disk) the arrays are made in memory instead, with a
warning: a cache is never a reason for a job to fail.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xxhash

from ftmatrix.result import fsync_folder, write_json_atomic

# bump when what an entry holds, or how it is derived or checked, changes
FORMAT = 2  # 2: xxh3_128 checksums (1: sha256)
MANIFEST = "manifest.json"
ENV = "FTMATRIX_CACHE"

# alloc(name, shape, dtype) -> a writable array that becomes the entry's array `name`
Alloc = Callable[[str, tuple[int, ...], Any], np.ndarray]

log = logging.getLogger(__name__)


def default_dir(job_dir: Path) -> Path | None:
    """The cache folder for a job in `runs/<matrix>/<job-id>/` (see the module doc)."""
    chosen = os.environ.get(ENV)
    if chosen == "off":
        return None
    if chosen:
        return Path(chosen)
    return Path(job_dir).resolve().parent.parent / ".cache" / "data"


def fingerprint(parts: Iterable[str]) -> str:
    """sha256 over the parts, each length-prefixed so that no two lists collide."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def file_stamp(path: str | os.PathLike) -> str:
    """What says a file is unchanged without reading it: its path, size and mtime."""
    st = os.stat(path)
    return f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}"


def cached(root: Path | None, key: str, fill: Callable[[Alloc], None]) -> dict[str, np.ndarray]:
    """The arrays of entry `key`: read from `root` when a valid entry is there, else
    made by `fill` (which allocates them with the `alloc` it is given and fills them)
    and stored. `root` None: no cache, `fill` writes into plain memory."""
    if root is None:
        return _in_memory(fill)
    try:
        with _locked(root, key):
            found = lookup(root, key)
            if found is None:
                _discard(root / key)
                found = _build(root, key, fill)
            return found
    except OSError as err:
        log.warning("data cache %s not usable (%s): decoding in memory", root, err)
        return _in_memory(fill)


def lookup(root: Path, key: str) -> dict[str, np.ndarray] | None:
    """The entry's arrays if it is complete and every check passes, else None. Reads
    only: safe without the lock, since entries appear whole (by rename)."""
    folder = root / key
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format") != FORMAT or manifest.get("key") != key:
            return None
        arrays = {}
        for name, meta in manifest["arrays"].items():
            path = folder / meta["file"]
            arr = np.load(path, mmap_mode="c", allow_pickle=False)
            if (
                list(arr.shape) != meta["shape"]
                or str(arr.dtype) != meta["dtype"]
                or arr.nbytes != meta["bytes"]
                or path.stat().st_size != _offset(arr) + arr.nbytes
                or checksum(arr) != meta["xxh3_128"]
            ):
                return None
            arrays[name] = arr
        return arrays
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        # missing, truncated (numpy refuses to map past the end), unparsable
        return None


# ------------------------------------------------------------------- internals


def _in_memory(fill: Callable[[Alloc], None]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}

    def alloc(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        arrays[name] = np.empty(shape, dtype=dtype)
        return arrays[name]

    fill(alloc)
    return arrays


def _build(root: Path, key: str, fill: Callable[[Alloc], None]) -> dict[str, np.ndarray]:
    """Fill a temporary folder, seal it with its manifest, rename it to `key`."""
    tmp = root / f".tmp-{key}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    made: dict[str, np.ndarray] = {}

    def alloc(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        path = tmp / f"{name}.npy"
        arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        if hasattr(os, "posix_fallocate") and arr.nbytes:
            # reserve the blocks now: a full disk fails here with ENOSPC, not later as
            # a SIGBUS while writing into a sparse mapped file
            with open(path, "r+b") as f:
                os.posix_fallocate(f.fileno(), 0, _offset(arr) + arr.nbytes)
        made[name] = arr
        return arr

    try:
        fill(alloc)
        manifest: dict[str, Any] = {"format": FORMAT, "key": key, "arrays": {}}
        for name, arr in made.items():
            arr.flush()
            with open(tmp / f"{name}.npy", "rb") as f:
                os.fsync(f.fileno())
            manifest["arrays"][name] = {
                "file": f"{name}.npy",
                "shape": list(arr.shape),
                "dtype": str(arr.dtype),
                "bytes": arr.nbytes,
                "xxh3_128": checksum(arr),
            }
        made.clear()  # drop the writable mappings: what we hand out is copy-on-write
        write_json_atomic(tmp / MANIFEST, manifest)  # last: an entry without it is void
        os.rename(tmp, root / key)
        fsync_folder(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    found = lookup(root, key)
    if found is None:  # cannot happen unless the disk lies; never hand out unchecked data
        raise OSError(f"cache entry {root / key} fails its check right after writing")
    return found


@contextlib.contextmanager
def _locked(root: Path, key: str) -> Iterator[None]:
    """Hold the build lock of `key`; also clear temporary folders that killed builds
    of it left behind (nobody else builds it while we hold the lock)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{key}.lock", "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        for stale in root.glob(f".tmp-{key}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        yield  # the lock goes with the file's closing


def _discard(folder: Path) -> None:
    """Remove a void entry (readers that mapped its files keep their mapping)."""
    if folder.exists():
        aside = folder.with_name(f".tmp-{folder.name}-void-{secrets.token_hex(4)}")
        os.rename(folder, aside)
        shutil.rmtree(aside, ignore_errors=True)


def checksum(arr: np.ndarray) -> str:
    """xxh3_128 of the array's bytes, as hex."""
    return xxhash.xxh3_128_hexdigest(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))


def _offset(arr: np.ndarray) -> int:
    """Where the data starts in a mapped `.npy` file: the length of its header."""
    return int(getattr(arr, "offset", 0))
