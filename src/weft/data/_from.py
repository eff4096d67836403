"""The ``from_*`` constructors: every pipeline starts at one of these."""

from __future__ import annotations

import glob as globlib
import os
from collections.abc import Iterable, Sequence
from typing import Any

from weft.data._build import (
    IterableSourceSpec,
    JsonlSourceSpec,
    OneShot,
    RandomSourceSpec,
)
from weft.data._paths import nothing_matches
from weft.data._pipeline import Pipeline
from weft.errors import ConfigError

__all__ = ["IMAGE_EXTENSIONS", "from_array", "from_files", "from_image_folder", "from_iterable",
           "from_jsonl", "from_npy", "from_range"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


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

