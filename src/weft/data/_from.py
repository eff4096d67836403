"""The ``from_*`` constructors: every pipeline starts at one of these."""

from __future__ import annotations

import glob as globlib
import os
from collections.abc import Iterable, Sequence
from typing import Any

from weft._checks import check_int, check_one_of
from weft.data._build import (
    IterableSourceSpec,
    JsonlSourceSpec,
    OneShot,
    ParquetSourceSpec,
    RandomSourceSpec,
    WebDatasetSourceSpec,
)
from weft.data._paths import Location, nothing_matches, resolve_files, root_of
from weft.data._pipeline import Pipeline
from weft.errors import ConfigError

__all__ = ["IMAGE_EXTENSIONS", "TAR_SUFFIXES", "from_array", "from_files", "from_image_folder", "from_iterable",
           "from_jsonl", "from_npy", "from_parquet", "from_range", "from_webdataset"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
#: what a directory given to from_webdataset contributes
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
_ON_ERROR = ("raise", "skip")


def _random(get: Any, length: int, name: str, *, classes: Sequence[str] | None = None) -> Pipeline:
    return Pipeline((RandomSourceSpec(get=get, length=length, name=name),), classes=classes)


def from_iterable(obj: Iterable[Any], *, name: str | None = None) -> Pipeline:
    """Items of any iterable. A ``Sequence`` (list, tuple, ...) is random-access: it
    resumes by index and shuffles as a full permutation; other iterables stream (they
    resume by iterating again and skipping, so they must be re-iterable)."""
    if isinstance(obj, (str, bytes)):
        raise ConfigError("from_iterable got a string: pass a list of items (e.g. [text]) or use from_files")
    if isinstance(obj, Sequence) or (hasattr(obj, "__getitem__") and hasattr(obj, "__len__")
                                     and not isinstance(obj, dict)):
        seq: Any = obj
        return _random(seq.__getitem__, len(seq), name or type(obj).__name__)
    if not isinstance(obj, Iterable):
        raise ConfigError(f"from_iterable needs an iterable, got {type(obj).__name__}")
    one_shot = OneShot() if iter(obj) is obj else None  # type: ignore[comparison-overlap]
    return Pipeline((IterableSourceSpec(iterable=obj, name=name or type(obj).__name__, one_shot=one_shot),))


def from_range(start: int, stop: int | None = None, step: int = 1) -> Pipeline:
    """Integers, like ``range(...)``; random-access."""
    r = range(start) if stop is None else range(start, stop, step)
    return _random(r.__getitem__, len(r), "range")


def from_array(arr: Any, *, name: str = "array") -> Pipeline:
    """Rows of a NumPy array (views, not copies); random-access."""
    import numpy as np

    if not isinstance(arr, np.ndarray) or arr.ndim == 0:
        raise ConfigError(f"from_array needs a NumPy array with at least one dimension, got {type(arr).__name__}")
    return _random(arr.__getitem__, len(arr), name)


def from_npy(path: str | os.PathLike[str]) -> Pipeline:
    """Rows of a ``.npy`` file, memory-mapped: only the rows read are loaded."""
    import numpy as np

    if not os.path.isfile(path):
        raise nothing_matches("from_npy", path)
    arr = np.load(os.fspath(path), mmap_mode="r")
    return from_array(arr, name=f"npy:{os.path.basename(os.fspath(path))}")


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def from_files(pattern: str | os.PathLike[str], *, read: bool = False) -> Pipeline:
    """Paths matching a glob (``**`` recurses), sorted; ``read=True`` yields their bytes.

    Reading happens in the thread that pulls from the source: for slow storage keep
    ``read=False`` and read in a ``.map(read, workers=32)`` instead.
    """
    paths = sorted(p for p in globlib.glob(os.fspath(pattern), recursive=True) if os.path.isfile(p))
    if not paths:
        hint = (f"it is a directory: pass a pattern such as {os.path.join(os.fspath(pattern), '**', '*')!r}"
                if os.path.isdir(pattern) else "")
        raise nothing_matches("from_files", pattern, hint)
    name = f"files:{os.fspath(pattern)}"
    if read:
        return _random(lambda i: _read_bytes(paths[i]), len(paths), name)
    return _random(paths.__getitem__, len(paths), name)


def from_jsonl(path: str | os.PathLike[str]) -> Pipeline:
    """Records of a JSON Lines file, streamed; resumes by seeking to a byte offset."""
    if not os.path.isfile(path):
        raise nothing_matches("from_jsonl", path, "no such file")
    return Pipeline((JsonlSourceSpec(path=os.fspath(path)),))


def from_image_folder(root: str | os.PathLike[str], *,
                      extensions: Sequence[str] = IMAGE_EXTENSIONS) -> Pipeline:
    """``(path, class_index)`` for every image under ``root/<class>/``; ``.classes`` names them."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise ConfigError(f"no such directory: {root!r}")
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
    if not classes:
        raise ConfigError(f"{root!r} has no class sub-directories: expected root/<class>/<image>")
    exts = tuple(e.lower() for e in extensions)
    items: list[tuple[str, int]] = []
    for index, cls in enumerate(classes):
        for dirpath, _dirs, files in sorted(os.walk(os.path.join(root, cls))):
            items.extend((os.path.join(dirpath, f), index) for f in sorted(files) if f.lower().endswith(exts))
    if not items:
        raise nothing_matches("from_image_folder", root, f"its class directories {classes[:5]} hold no file "
                              f"ending in {' / '.join(exts)}")
    return _random(items.__getitem__, len(items), f"images:{os.path.basename(root)}", classes=classes)


def _label(location: Location) -> str:
    if isinstance(location, (str, os.PathLike)):
        return os.fspath(location)
    entries = list(location)
    return os.fspath(entries[0]) if len(entries) == 1 else f"{len(entries)} paths"


def from_parquet(path: Location, *, columns: Sequence[str] | None = None, filter: Any = None,
                 rows: str = "dicts", batch_rows: int = 65_536, on_error: str = "raise") -> Pipeline:
    """Rows of Parquet files, streamed row group by row group (needs ``weft[arrow]``).

    ``path``: a file, a directory (every file below it, names starting with ``_`` or
    ``.`` passed over), a glob or a list of those. Hive partitions in directory names
    below it (``date=2026-11-01/``) become fields. ``columns`` projects; ``filter`` is a
    ``pyarrow.compute`` expression or a dict (``{"year": 2024}``, ``{"year": [2023, 2024]}``,
    ``{"x": {">=": 0, "<": 1}}``; every entry must hold) and prunes partitions and row
    groups before reading them. ``rows="dicts"`` yields one dict of NumPy scalars and
    arrays per row; ``rows="batches"`` one dict of column arrays per batch of up to
    ``batch_rows`` rows (never spanning two row groups). Arrays may be read-only views
    of Arrow memory.

    ``.shard(rank, world_size)`` splits the row groups between ranks; ``.shuffle(buffer,
    seed)`` permutes the row groups every epoch and buffer-shuffles the items. Resume
    seeks to the row group and row. An unreadable file raises ``DataError`` naming it;
    ``on_error="skip"`` skips it (logged, counted in the statistics).
    """
    check_one_of("rows", rows, ("dicts", "batches"))
    check_one_of("on_error", on_error, _ON_ERROR)
    check_int("batch_rows", batch_rows)
    files = resolve_files(path, source="from_parquet")
    from weft.data._parquet import ParquetCatalog

    label = _label(path)
    if columns is not None and not columns:
        raise ConfigError("from_parquet: columns=[] selects nothing: name at least one column, or pass None for all")
    catalog = ParquetCatalog(files, root=root_of(path), columns=columns, filter=filter, on_error=on_error,
                             label=label)
    return Pipeline((ParquetSourceSpec(catalog=catalog, rows=rows == "dicts", batch_rows=batch_rows,
                                       on_error=on_error),))


def from_webdataset(shards: Location, *, decode: bool | Sequence[str] = False,
                    on_error: str = "raise") -> Pipeline:
    """Samples of WebDataset tar shards, streamed (nothing is extracted).

    ``shards``: a file, a directory (its ``.tar`` files), a glob, a brace range
    (``"data/shard-{000000..000099}.tar"``) or a list of those. A sample is a dict
    ``{extension: bytes}`` of the members sharing a key, plus ``"__key__"`` and
    ``"__shard__"``. ``decode=True`` decodes the extensions weft knows (``jpg``/``png``
    to arrays with Pillow, ``npy``, ``json``, ``txt``, ``cls``); a list decodes only
    those. Decoding runs in the thread that reads: for images, decode in a
    ``.map(..., workers=N)`` instead to use every core.

    ``.shard(rank, world_size)`` splits the shards between ranks; ``.shuffle(buffer,
    seed)`` permutes the shards every epoch and buffer-shuffles the samples. Resume
    seeks to the shard and member. A truncated shard raises ``DataError`` naming it;
    ``on_error="skip"`` skips the rest of it (logged, counted in the statistics).
    """
    from weft.data._webdataset import decoders_for

    check_one_of("on_error", on_error, _ON_ERROR)
    decoders = decoders_for(decode)
    files = resolve_files(shards, source="from_webdataset", suffixes=TAR_SUFFIXES)
    return Pipeline((WebDatasetSourceSpec(shards=tuple(files), decoders=tuple(decoders.items()),
                                          on_error=on_error, name=f"webdataset:{_label(shards)}"),))
