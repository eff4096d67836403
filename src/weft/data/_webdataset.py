"""WebDataset: samples from tar shards, read with the stdlib ``tarfile`` in streaming
mode (nothing is extracted to disk).

A shard holds samples as consecutive members sharing a key: ``0001.jpg``, ``0001.cls``,
``0002.jpg``, ... The key is the member's path up to the first dot of its file name,
the extension the rest (lower-cased), as the ``webdataset`` package splits them. A
sample is ``{extension: bytes, "__key__": key, "__shard__": shard path}``, with opt-in
decoders for the common extensions.

Position: the shard and the byte offset (in the uncompressed tar) of the header of
the next sample's first member. Resume opens that shard, seeks there and goes on; a
compressed shard (``.tar.gz``, ...) cannot seek, so it is read from its start with the
members before the offset skipped unread.

A shard that ends early (truncated data, a torn header, no end-of-archive block) raises
:class:`~weft.errors.DataError` naming it; with ``on_error="skip"`` the rest of that
shard is skipped, logged and counted.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import tarfile
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Literal, cast

from weft.data._node import Key
from weft.data._sources import Transform
from weft.data._units import UnitSource
from weft.errors import ConfigError, DataError, ResumeError

__all__ = ["DECODERS", "WebDatasetSource", "decoders_for", "read_samples"]

log = logging.getLogger(__name__)

#: webdataset's split of a member name into key and extension
_NAME = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")
_BLOCK = 512
_Mode = Literal["r|", "r|gz", "r|bz2", "r|xz"]
_COMPRESSED: tuple[tuple[bytes, _Mode], ...] = (
    (b"\x1f\x8b", "r|gz"), (b"BZh", "r|bz2"), (b"\xfd7zXZ\x00", "r|xz"))
#: what reading a shard raises when its bytes are not a whole tar archive
_READ_ERRORS: tuple[type[BaseException], ...] = (tarfile.TarError, EOFError, OSError)

Sample = dict[str, Any]
#: what reading a shard yields: (start, sample, end) offsets and the sample
Samples = Generator[tuple[int, Sample, int], None, None]


def _image(data: bytes) -> Any:
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return np.array(image)


def _npy(data: bytes) -> Any:
    import numpy as np

    return np.load(io.BytesIO(data), allow_pickle=False)


def _text(data: bytes) -> str:
    return data.decode("utf-8")


def _class(data: bytes) -> int:
    return int(data.decode("utf-8").strip())


#: extension -> decoder (bytes -> value): images to HxW[xC] uint8 arrays (Pillow), .npy to
#: arrays, .json to objects, .txt to str, .cls to int
DECODERS: dict[str, Callable[[bytes], Any]] = {
    "cls": _class, "jpeg": _image, "jpg": _image, "json": json.loads, "npy": _npy, "png": _image, "txt": _text,
}


def decoders_for(decode: bool | Sequence[str]) -> dict[str, Callable[[bytes], Any]]:
    """The decoders ``decode`` asks for: none, all of :data:`DECODERS`, or those named."""
    if decode is True:
        return dict(DECODERS)
    if decode is False or decode is None:
        return {}
    if isinstance(decode, str) or not isinstance(decode, Sequence):
        raise ConfigError(f"decode must be True, False or a list of extensions such as ['jpg', 'cls'], got {decode!r}")
    chosen: dict[str, Callable[[bytes], Any]] = {}
    for ext in decode:
        name = str(ext).lower().lstrip(".")
        if name not in DECODERS:
            raise ConfigError(f"no decoder for {ext!r}: weft decodes {sorted(DECODERS)}; decode other "
                              "extensions in a .map(...)")
        chosen[name] = DECODERS[name]
    return chosen


def _mode(f: Any) -> _Mode:
    head = f.read(6)
    f.seek(0)
    plain: _Mode = "r|"
    return next((mode for magic, mode in _COMPRESSED if head.startswith(magic)), plain)


#: what member readers yield: (offset of the member's first header, name, data) per
#: regular file, then (offset of the end-of-archive block, None, b"")
Members = Generator[tuple[int, str | None, bytes], None, None]
_ZEROS = bytes(_BLOCK)
#: ustar's POSIX magic: only then do the 155 bytes at 345 hold a name prefix (GNU tar
#: keeps times there)
_POSIX_MAGIC = b"ustar\x0000"
#: type flags of members whose data is a regular file's contents
_FILE_TYPES = (b"0", b"\x00", b"7")
#: reads of uncompressed shards: few system calls for many small members
_BUFFER = 1 << 20


def _torn(path: str, at: int, what: str) -> DataError:
    return DataError(f"tar shard {path!r} ends early at byte {at} ({what}: truncated, or a damaged member "
                     "header): replace the shard, or pass on_error='skip' to read the others")


def _number(field: bytes, path: str, at: int) -> int:
    """A numeric header field: octal text, or GNU's base-256 for large values."""
    if field[0] & 0x80:
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\x00", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise _torn(path, at, f"a header field holds {text[:12]!r}, not a number") from None


def _pax(data: bytes) -> dict[str, str]:
    """The records of a pax extended header: ``"%d %s=%s\\n"``, length first."""
    out: dict[str, str] = {}
    i = 0
    while i < len(data):
        space = data.find(b" ", i)
        if space < 0:
            break
        length = int(data[i:space])
        key, _, value = data[space + 1:i + length - 1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        i += length
    return out


def _plain_members(f: Any, path: str, offset: int) -> Members:
    """The members of an uncompressed tar from byte ``offset``, read straight from the
    headers: what tarfile's stream mode reads (ustar names with their prefix, GNU long
    names, pax paths and sizes), without building a TarInfo per member, which costs
    more than reading a small member's data."""
    f.seek(offset)
    pos = offset
    first = None  # the offset of the first extension header before the member
    long_name: str | None = None
    pax: dict[str, str] = {}
    read = f.read
    while True:
        header = read(_BLOCK)
        if len(header) < _BLOCK:
            raise _torn(path, pos, "no end-of-archive block" if not header else "inside a member header")
        if header == _ZEROS:
            yield pos, None, b""
            return
        stored = _number(header[148:156], path, pos)
        if stored != sum(header) - sum(header[148:156]) + 256:
            raise _torn(path, pos, "a member header whose checksum does not match")
        size = _number(header[124:136], path, pos)
        kind = header[156:157]
        if "size" in pax:
            size = int(pax["size"])
        padded = (size + _BLOCK - 1) & ~(_BLOCK - 1)
        start = pos if first is None else first
        if kind in (b"L", b"x", b"g"):
            data = read(padded)
            if len(data) < padded:
                raise _torn(path, pos, "inside an extended header")
            if kind == b"L":
                long_name = data[:size].split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
            elif kind == b"x":
                pax = _pax(data[:size])
            first = start
            pos += _BLOCK + padded
            continue
        if kind in _FILE_TYPES:
            if long_name is not None:
                name = long_name
            elif "path" in pax:
                name = pax["path"]
            else:
                name = header[:100].split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
                if header[257:265] == _POSIX_MAGIC and header[345] != 0:
                    prefix = header[345:500].split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")
                    name = f"{prefix}/{name}"
            data = read(size)
            if len(data) < size:
                raise _torn(path, pos + _BLOCK + len(data), f"inside the data of member {name!r}")
            if padded > size and len(read(padded - size)) < padded - size:
                raise _torn(path, pos + _BLOCK + size, f"inside the padding of member {name!r}")
            yield start, name, data
        elif padded:
            f.seek(padded, 1)  # a directory, link or device: nothing of a sample
        first, long_name, pax = None, None, {}
        pos += _BLOCK + padded


def _tarfile_members(f: Any, mode: _Mode, path: str, skip_to: int) -> Members:
    """The members of a compressed tar through tarfile's stream mode, those before
    ``skip_to`` (offsets in the uncompressed archive) read past, not returned."""
    tar = tarfile.open(fileobj=f, mode=mode)  # noqa: SIM115 - read_samples closes f
    while True:
        member = tar.next()
        if member is None:
            break
        # tarfile keeps every member it met (an attribute its stubs omit): memory would grow
        tar.members = []  # type: ignore[attr-defined]
        if member.offset < skip_to or not member.isfile():
            continue
        extracted = tar.extractfile(member)
        assert extracted is not None
        yield member.offset, member.name, extracted.read()
    # tarfile ends quietly at a torn or missing header; a whole archive ends with a block
    # of zeros, read through the decompressor: its size tells a torn end
    if tar.fileobj.tell() - tar.offset != _BLOCK:  # type: ignore[union-attr]
        raise _torn(path, tar.offset, "no whole end-of-archive block")
    yield tar.offset, None, b""


def read_samples(path: str, offset: int) -> Samples:
    """``(start, sample, end)`` for every sample of the shard from byte ``offset`` on:
    ``start`` is the offset of the sample's first member header, ``end`` where the
    next sample starts (at the last sample: the end-of-archive block). Offsets count
    in the uncompressed archive."""
    with open(path, "rb", buffering=_BUFFER) as f:
        mode = _mode(f)
        members = _plain_members(f, path, offset) if mode == "r|" else _tarfile_members(f, mode, path, offset)
        key: str | None = None
        sample: Sample | None = None
        start = 0
        for at, name, data in members:
            if name is None:
                if sample is not None:
                    yield start, sample, at
                return
            match = _NAME.match(name)
            if match is None:
                continue  # no extension: not part of a sample (webdataset skips these too)
            prefix, ext = match.group(1), match.group(2).lower()
            if prefix != key:
                if sample is not None:
                    yield start, sample, at
                key, start, sample = prefix, at, {"__key__": prefix, "__shard__": path}
            elif ext in sample:  # type: ignore[operator]
                raise DataError(f"tar shard {path!r}: sample {prefix!r} has two {ext!r} members: each "
                                "extension may occur once per sample (keys must be consecutive and unique)")
            sample[ext] = data  # type: ignore[index]


class WebDatasetSource(UnitSource):
    """Samples of tar shards. Keys: ``(shard index, start offset)``."""

    unit_noun = "shard"

    def __init__(self, shards: Sequence[str], *, decoders: Mapping[str, Callable[[bytes], Any]],
                 transforms: tuple[Transform, ...], on_error: str, name: str) -> None:
        super().__init__(name=name, transforms=transforms, on_error=on_error)
        self._shards = shards
        self._decoders = dict(decoders)
        self._samples: Samples | None = None
        self.bad_shards = 0
        self.bad_samples = 0

    def unit_count(self) -> int:
        return len(self._shards)

    def unit_id(self, unit: int) -> tuple[int, ...]:
        return (unit,)

    def skipped_count(self) -> int:
        return self.bad_shards

    def stop_reading(self) -> None:
        samples, self._samples = self._samples, None
        if samples is not None:
            samples.close()

    def _unreadable(self, path: str, exc: BaseException) -> DataError:
        return DataError(f"cannot read tar shard {path!r}: {exc} (truncated or corrupt): replace the shard, "
                         "or pass on_error='skip' to read the others")

    def _decode(self, sample: Sample) -> Sample | None:
        """``sample`` with the chosen extensions decoded; None when one fails and failing
        samples are skipped."""
        for ext, data in sample.items():
            decoder = self._decoders.get(ext.rsplit(".", 1)[-1])
            if decoder is None or ext.startswith("__"):
                continue
            try:
                sample[ext] = decoder(data)
            except Exception as exc:
                if self.skip_bad:
                    self.bad_samples += 1
                    log.warning("weft: skipping sample %r of %s: its %r does not decode: %r",
                                sample["__key__"], sample["__shard__"], ext, exc)
                    return None
                raise DataError(f"tar shard {sample['__shard__']!r}: member {sample['__key__']}.{ext} does not "
                                f"decode as {ext!r} ({exc!r}): fix the sample, decode it yourself in a "
                                ".map(...), or pass on_error='skip'") from exc
        return sample

    def next(self) -> tuple[Key, Any]:
        begin = time.perf_counter()
        try:
            while True:
                if self._samples is None:
                    order = self.order()
                    if self._pos >= len(order):
                        raise StopIteration
                    if self._ident is None:
                        self.at(self._pos, self._offset)
                    self._samples = read_samples(self._shards[int(order[self._pos])], self._offset)
                    self.units_started += 1
                try:
                    start, sample, end = next(self._samples)
                except StopIteration:
                    self._samples = None
                    self.at(self._pos + 1, 0)
                    continue
                except _READ_ERRORS + (DataError,) as exc:
                    self.stop_reading()
                    path = self._shards[int(self.order()[self._pos])]
                    if not self.skip_bad:
                        if isinstance(exc, DataError):
                            raise
                        raise self._unreadable(path, exc) from exc
                    self.bad_shards += 1
                    log.warning("weft: skipping the rest of tar shard %s (on_error='skip'): %s", path, exc)
                    self.at(self._pos + 1, 0)
                    continue
                self._offset = end
                shard = self._ident[0]  # type: ignore[index]
                decoded = self._decode(sample) if self._decoders else sample
                if decoded is None:
                    continue
                self.items += 1
                return (shard, start), decoded
        finally:
            self.busy += time.perf_counter() - begin

    def fetch(self, keys: Sequence[Key]) -> list[Any]:
        """Samples by ``(shard, start)`` key, read again: a seek each in an uncompressed
        shard, one pass over a compressed one."""
        wanted: dict[int, set[int]] = {}
        for key in keys:
            shard, start = cast(tuple[int, int], key)
            if not 0 <= shard < len(self._shards):
                raise ResumeError(f"{self.name}: the state holds a sample of shard {shard}, but there are only "
                                  f"{len(self._shards)}: load a state saved over the same shards")
            wanted.setdefault(shard, set()).add(start)
        found: dict[Key, Any] = {}
        for shard, starts in wanted.items():
            path = self._shards[shard]
            with open(path, "rb") as f:
                seekable = _mode(f) == "r|"
            groups = [[s] for s in sorted(starts)] if seekable else [sorted(starts)]
            for group in groups:
                remaining = set(group)
                with contextlib.closing(read_samples(path, group[0])) as samples:
                    for start, sample, _end in samples:
                        if start in remaining:
                            found[(shard, start)] = self._decode(sample) if self._decoders else sample
                            remaining.discard(start)
                        if not remaining or start > group[-1]:
                            break
        missing = [k for k in keys if k not in found]
        if missing:
            raise ResumeError(f"{self.name}: the state holds samples {missing[:3]} that the shards no longer "
                              "have at those offsets: load a state saved over the same shards")
        return [found[k] for k in keys]

    def _extra_statistics(self) -> dict[str, Any]:
        out = super()._extra_statistics()
        out["extra"]["samples_skipped"] = float(self.bad_samples)
        return out
