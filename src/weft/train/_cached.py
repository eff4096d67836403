"""``cached``: an LRU cache keyed by value, safe under many threads, optionally on disk.

Keys are content digests (BLAKE2b) of the arguments: a NumPy array counts by its
dtype, shape and bytes, never by ``id`` or Python's ``hash``. The cache is bounded by
entries and by bytes; while one thread computes a key, the others asking for the same
key wait for that one result (one computation per key). The optional disk store
writes NumPy results as ``.npy`` and JSON-able results as ``.json``; it never pickles,
and refuses any other result with a :class:`~weft.errors.ConfigError`.

Cached arrays are returned as read-only views, so a caller cannot corrupt the cache
by writing into a result.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Generator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from weft._checks import check_int
from weft.errors import ConfigError
from weft.train._wrap import CALL, COLLECT, START, Emit, Wait, kind_of, make_wrapper, qualified_name

__all__ = ["CacheStatistics", "cached", "content_key"]

F = TypeVar("F", bound=Callable[..., Any])

#: Bytes of a key digest: 160 bits, the size of a git object id; a collision between two
#: argument sets is about as likely as one between two commits.
_KEY_DIGEST = 20
#: Bytes of the digest of one dict entry; entries are digested apart and sorted, so a dict's
#: key does not depend on its insertion order. 128 bits are plenty inside one key.
_ENTRY_DIGEST = 16
#: How deep a result's nested lists, tuples and dicts are walked to estimate its bytes; deeper
#: levels count by ``sys.getsizeof`` alone (an estimate for max_bytes, not an exact figure).
_SIZE_DEPTH = 3


@dataclass(frozen=True, kw_only=True)
class CacheStatistics:
    hits: int
    misses: int
    waited: int          # calls that waited for another thread computing the same key
    disk_hits: int
    entries: int
    bytes: int
    evictions: int
    maxsize: int | None
    max_bytes: int | None


def _feed(h: Any, value: object, opaque: list[object]) -> None:
    if value is None or isinstance(value, bool):
        h.update(b"c" + repr(value).encode())
    elif isinstance(value, int):
        h.update(b"i" + str(value).encode() + b";")
    elif isinstance(value, float):
        h.update(b"f" + struct.pack("<d", value))
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(b"s" + str(len(data)).encode() + b":" + data)
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        h.update(b"b" + str(len(data)).encode() + b":" + data)
    elif isinstance(value, np.ndarray | np.generic):
        array = np.asarray(value, order="C")
        if array.dtype.hasobject:
            raise ConfigError("cached: object arrays cannot be keyed by content; pass numeric arrays "
                              "or give cached(key=...) a function returning a plain key")
        h.update(f"a{array.dtype.str}{array.shape};".encode())
        h.update(array.reshape(-1).data.cast("B"))
    elif isinstance(value, list | tuple):
        h.update(f"{'l' if isinstance(value, list) else 't'}{len(value)}[".encode())
        for item in value:
            _feed(h, item, opaque)
        h.update(b"]")
    elif isinstance(value, dict):
        parts = []
        for k, v in value.items():
            sub = hashlib.blake2b(digest_size=_ENTRY_DIGEST)
            _feed(sub, k, opaque)
            _feed(sub, v, opaque)
            parts.append(sub.digest())
        h.update(f"d{len(parts)}[".encode() + b"".join(sorted(parts)) + b"]")
    else:
        try:
            hash(value)
        except TypeError:
            raise ConfigError(f"cached: an argument of type {type(value).__name__} can neither be digested "
                              "nor hashed; give cached(key=...) a function returning a plain key") from None
        h.update(f"o{len(opaque)};".encode())
        opaque.append(value)


def content_key(*args: object, **kwargs: object) -> str:
    """The hex digest ``cached`` uses for these arguments (arrays by dtype, shape, bytes)."""
    h = hashlib.blake2b(digest_size=_KEY_DIGEST)
    opaque: list[object] = []
    _feed(h, (args, kwargs), opaque)
    if opaque:
        raise ConfigError(f"content_key: arguments of type {[type(o).__name__ for o in opaque]} have no content "
                          "digest")
    return h.hexdigest()


def _nbytes(value: object, depth: int = 0) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if depth < _SIZE_DEPTH and isinstance(value, list | tuple):
        return sys.getsizeof(value) + sum(_nbytes(v, depth + 1) for v in value)
    if depth < _SIZE_DEPTH and isinstance(value, dict):
        return sys.getsizeof(value) + sum(_nbytes(v, depth + 1) for v in value.values())
    return sys.getsizeof(value)


def _frozen(value: Any) -> Any:
    if isinstance(value, np.ndarray) and value.flags.writeable:
        view = value.view()
        view.flags.writeable = False
        return view
    return value


def _check_json(value: object, where: str = "result") -> None:
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int | float) and type(value) in (int, float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"cached(directory=...): {where} is {value!r}, which JSON cannot store")
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"cached(directory=...): {where} has key {k!r}; JSON keys must be str")
            _check_json(v, f"{where}[{k!r}]")
        return
    raise ConfigError(f"cached(directory=...) stores NumPy arrays (.npy) and JSON values (None, bool, int, "
                      f"float, str, list, dict with str keys) without pickle; {where} is a "
                      f"{type(value).__name__}. Return one of those, or drop directory=")


class _DiskStore:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> tuple[bool, Any]:
        for suffix in (".npy", ".scalar.npy"):
            npy = self.directory / f"{key}{suffix}"
            if npy.exists():
                array = np.load(npy, allow_pickle=False)
                return True, array if suffix == ".npy" else array[()]
        js = self.directory / f"{key}.json"
        if js.exists():
            with open(js, encoding="utf-8") as f:
                return True, json.load(f)
        return False, None

    def put(self, key: str, value: Any) -> None:
        if isinstance(value, np.ndarray | np.generic):
            array = np.asarray(value)
            if array.dtype.hasobject:
                raise ConfigError("cached(directory=...): object arrays would need pickle; return a numeric array")
            name = f"{key}.scalar.npy" if isinstance(value, np.generic) else f"{key}.npy"
            self._atomic(name, lambda f: np.save(f, array, allow_pickle=False))
            return
        _check_json(value)
        data = json.dumps(value).encode()
        self._atomic(f"{key}.json", lambda f: f.write(data))

    def _atomic(self, name: str, write: Callable[[Any], object]) -> None:
        tmp = self.directory / f".{name}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, self.directory / name)


class _Cache:
    def __init__(self, maxsize: int | None, max_bytes: int | None, disk: _DiskStore | None) -> None:
        self.maxsize, self.max_bytes, self.disk = maxsize, max_bytes, disk
        self.lock = threading.Lock()
        self.entries: OrderedDict[object, tuple[Any, int]] = OrderedDict()
        self.in_flight: dict[object, Future[Any]] = {}
        self.bytes = self.hits = self.misses = self.waited = self.disk_hits = self.evictions = 0

    def lookup(self, key: object) -> tuple[str, Any]:
        """('hit', value) | ('wait', future) | ('own', future)."""
        with self.lock:
            entry = self.entries.get(key)
            if entry is not None:
                self.entries.move_to_end(key)
                self.hits += 1
                return "hit", entry[0]
            future = self.in_flight.get(key)
            if future is not None:
                self.waited += 1
                return "wait", future
            future = Future()
            self.in_flight[key] = future
            self.misses += 1
            return "own", future

    def store(self, key: object, value: Any) -> Any:
        value = _frozen(value)
        size = _nbytes(value)
        with self.lock:
            if self.max_bytes is None or size <= self.max_bytes:
                self.entries[key] = (value, size)
                self.bytes += size
                while self.entries and ((self.maxsize is not None and len(self.entries) > self.maxsize)
                                        or (self.max_bytes is not None and self.bytes > self.max_bytes)):
                    _, (_, dropped) = self.entries.popitem(last=False)
                    self.bytes -= dropped
                    self.evictions += 1
        return value

    def finish(self, key: object, future: Future[Any], value: Any = None, error: BaseException | None = None) -> None:
        with self.lock:
            self.in_flight.pop(key, None)
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.bytes = 0

    def statistics(self) -> CacheStatistics:
        with self.lock:
            return CacheStatistics(hits=self.hits, misses=self.misses, waited=self.waited,
                                   disk_hits=self.disk_hits, entries=len(self.entries), bytes=self.bytes,
                                   evictions=self.evictions, maxsize=self.maxsize, max_bytes=self.max_bytes)


def cached(target: Any = None, /, *, maxsize: int | None = 128, max_bytes: int | None = None,
           directory: str | os.PathLike[str] | None = None,
           key: Callable[..., object] | None = None) -> Any:
    """Memoize by argument value; ``@cached`` or ``@cached(maxsize=..., max_bytes=..., directory=...)``.

    ``key`` replaces the arguments by ``key(*args, **kwargs)`` before digesting (use it to
    leave ``self`` out of a method's key, for example). Exceptions are not cached: every
    waiter gets the error, the next call computes again. A generator's items are
    materialised once and replayed. The wrapper gains ``.statistics()`` and ``.cache_clear()``.
    """
    check_int("maxsize", maxsize, none=True)
    check_int("max_bytes", max_bytes, none=True)

    def decorate(fn: F) -> F:
        kind = kind_of(fn)
        if directory is not None and kind in ("generator", "async_generator"):
            raise ConfigError("cached(directory=...) cannot store a generator's items; drop directory=")
        name = qualified_name(fn)
        disk = _DiskStore(Path(directory) / name.replace("<", "_").replace(">", "_")) if directory else None
        cache = _Cache(maxsize, max_bytes, disk)

        def make_key(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, tuple[object, ...]]:
            h = hashlib.blake2b(digest_size=_KEY_DIGEST)
            opaque: list[object] = []
            _feed(h, key(*args, **kwargs) if key is not None else (args, kwargs), opaque)
            return h.hexdigest(), tuple(opaque)

        def from_disk(digest: str, opaque: tuple[object, ...]) -> tuple[bool, Any]:
            if disk is None or opaque:
                return False, None
            found, value = disk.get(digest)
            if found:
                with cache.lock:
                    cache.disk_hits += 1
            return found, value

        def to_disk(digest: str, opaque: tuple[object, ...], value: Any) -> None:
            if disk is None:
                return
            if opaque:
                raise ConfigError(f"cached(directory=...) on {name}: arguments of type "
                                  f"{[type(o).__name__ for o in opaque]} have no stable content digest; "
                                  "give cached(key=...) a function returning plain values")
            disk.put(digest, value)

        def lookup_or_compute(args: tuple[Any, ...], kwargs: dict[str, Any],
                              compute: Callable[[], Generator[Any, Any, Any]]) -> Generator[Any, Any, Any]:
            k = make_key(args, kwargs)
            state, got = cache.lookup(k)
            if state == "hit":
                return got
            if state == "wait":
                return (yield Wait(got))
            try:
                found, value = from_disk(*k)
                if not found:
                    value = yield from compute()
                    to_disk(*k, value)
                value = cache.store(k, value)
            except BaseException as exc:
                cache.finish(k, got, error=exc)
                raise
            cache.finish(k, got, value)
            return value

        def run() -> Generator[Any, Any, Any]:
            return (yield CALL)

        def collect() -> Generator[Any, Any, Any]:
            yield START
            return (yield COLLECT)

        def call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
            return (yield from lookup_or_compute(args, kwargs, run))

        def iterate(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Generator[Any, Any, Any]:
            # the items are materialised once, cached as a tuple and replayed
            for item in (yield from lookup_or_compute(args, kwargs, collect)):
                yield Emit(item)

        wrapped: F = make_wrapper(fn, call=call, iterate=iterate,
                                  attributes={"statistics": cache.statistics, "cache_clear": cache.clear})
        return wrapped

    if callable(target):
        return decorate(target)
    if target is not None:
        raise ConfigError(f"cached() takes a function or keyword options, got {target!r}")
    return decorate
