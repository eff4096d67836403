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


def read_samples(path: str, offset: int) -> Samples:
    """``(start, sample, end)`` for every sample of the shard from byte ``offset`` on:
    ``start`` is the offset of the sample's first member header, ``end`` where the
    next sample starts (at the last sample: the end-of-archive block)."""
    with open(path, "rb") as f:
        mode = _mode(f)
        if mode == "r|":
            f.seek(offset)
            base, skip_to = offset, 0
        else:
            base, skip_to = 0, offset
        tar = tarfile.open(fileobj=f, mode=mode)  # noqa: SIM115 - the with block closes f
        key: str | None = None
        sample: Sample | None = None
        start = 0
        while True:
            member = tar.next()
            if member is None:
                break
            # tarfile keeps every member it met (an attribute its stubs omit): memory would grow
            tar.members = []  # type: ignore[attr-defined]
            at = base + member.offset
            if at < skip_to or not member.isfile():
                continue
            match = _NAME.match(member.name)
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
            extracted = tar.extractfile(member)
            assert extracted is not None
            sample[ext] = extracted.read()  # type: ignore[index]
        end = base + tar.offset
        _check_end(f, tar, mode, end, path)
        if sample is not None:
            yield start, sample, end


def _check_end(f: Any, tar: tarfile.TarFile, mode: str, end: int, path: str) -> None:
    """tarfile ends quietly at a torn or missing header; a whole archive ends with a
    block of zeros."""
    if mode == "r|":
        f.seek(end)
        block = f.read(_BLOCK)
        whole = block == bytes(_BLOCK)
    else:  # compressed: the block was read through the decompressor; its size tells a torn end
        whole = tar.fileobj.tell() - tar.offset == _BLOCK  # type: ignore[union-attr]
    if not whole:
        raise DataError(f"tar shard {path!r} ends early at byte {end} (truncated, or a damaged member "
                        "header): replace the shard, or pass on_error='skip' to read the others")


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
