"""Parquet, streamed row group by row group on ``pyarrow.dataset``.

:class:`ParquetCatalog` is what ``from_parquet`` found: the files, the dataset over
them with Hive partitions read from directory names below the root (``date=2026-11-01/``
makes a field ``date``), the projection and the filter. On first use it reads every
file's footer once and lists the row groups that may hold matching rows (partition
values and row-group statistics prune the others): those are the units that sharding
and shuffling order (:mod:`weft.data._units`).

:class:`ParquetSource` scans the units of its order from its position with one
pyarrow scanner (which reads a few row groups ahead on its own threads), tracks which
unit each batch came from, and hands on rows (dicts of NumPy scalars and arrays) or
whole batches (dicts of column arrays, never spanning two row groups). Memory is a
few row groups and batches whatever the file sizes. Position: the unit and the rows
already handed on from it; resume scans that one row group again and drops them.

A file that cannot be read (truncated, corrupt) raises :class:`~weft.errors.DataError`
naming it, or with ``on_error="skip"`` is skipped, logged and counted. Footers are
checked when the catalog is read; a data page that fails to decode surfaces during the
scan without saying which file, so the source then reads the units one at a time from
its position until it meets the failing one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, cast

import numpy as np

from weft.data._arrow import arrow, filter_expression, to_numpy
from weft.data._node import Key
from weft.data._sources import Transform
from weft.data._units import UnitSource
from weft.errors import ConfigError, DataError, ResumeError

__all__ = ["ParquetCatalog", "ParquetSource"]

log = logging.getLogger(__name__)

#: Row groups the scanner reads ahead, and batches it decodes ahead within them: enough
#: to keep pyarrow's threads busy, few enough that memory stays a handful of row groups.
FRAGMENT_READAHEAD = 2
BATCH_READAHEAD = 4
#: After a scan failed without naming its file, units read one at a time to find it:
#: the failing one is among those the scanner had started (its readahead, plus one).
_CAREFUL_UNITS = FRAGMENT_READAHEAD + 2


def _unreadable(path: str, exc: BaseException) -> DataError:
    return DataError(f"cannot read Parquet file {path!r}: {exc} (the file is truncated, corrupt or not "
                     "Parquet): replace or remove it, or pass on_error='skip' to read the others")


class ParquetCatalog:
    """The files, the dataset, the projection and filter of one ``from_parquet`` call;
    the row groups are listed once, on first use, and shared by every pass."""

    def __init__(self, files: list[str], *, root: str | None, columns: Sequence[str] | None,
                 filter: Any, on_error: str, label: str) -> None:
        self.pa, self.ds, pc = arrow()
        self.label = label
        self.files = [os.path.abspath(f) for f in files]
        self.skip_bad = on_error == "skip"
        #: file index -> why it is skipped (unreadable, on_error="skip")
        self.bad: dict[int, str] = {}
        self._index = {path: i for i, path in enumerate(self.files)}
        root = None if root is None else os.path.abspath(root)
        self.dataset = self._open(root)
        schema = self.dataset.schema
        self.partitions = [name for name in schema.names if name in self._partition_names(root)]
        available = list(schema.names)
        if columns is None:
            self.columns = available
        else:
            if isinstance(columns, str) or not all(isinstance(c, str) for c in columns):
                raise ConfigError(f"columns must be a list of column names, got {columns!r}")
            unknown = [c for c in columns if c not in available]
            if unknown:
                raise ConfigError(f"from_parquet: no column {unknown[0]!r} in {label}: its columns are {available}")
            self.columns = list(columns)
        self.scan_columns = [c for c in self.columns if c not in self.partitions]
        self.expression = filter_expression(filter, available, pc)
        try:  # binds the projection and the filter to the schema now, not at the first item
            self.dataset.scanner(columns=self.scan_columns, filter=self.expression)
        except (self.pa.ArrowException, TypeError) as exc:
            raise ConfigError(f"from_parquet: filter {self.expression} does not fit {label}: {exc}") from exc
        self._dtypes = {name: schema.field(name).type for name in self.partitions}
        self._lock = threading.Lock()
        self._units: list[tuple[int, int]] | None = None
        self._fragments: list[Any] = []
        self._partition_values: list[dict[str, Any]] = []
        self.unit_index: dict[tuple[int, int], int] = {}

    def _partition_names(self, root: str | None) -> set[str]:
        """The keys of the ``key=value`` directories below ``root`` (what Hive
        partitioning reads; pyarrow's partitioning object does not say it reliably)."""
        names: set[str] = set()
        for path in self.files:
            relative = os.path.relpath(os.path.dirname(path), root) if root else os.path.dirname(path)
            names.update(part.split("=", 1)[0] for part in relative.split(os.sep) if "=" in part)
        return names

    def _open(self, root: str | None) -> Any:
        ds = self.ds
        options: dict[str, Any] = {"format": "parquet", "partitioning": "hive"}
        if root is not None:
            options["partition_base_dir"] = root
        try:
            return ds.dataset(self.files, **options)
        except (self.pa.ArrowException, OSError) as exc:
            error: BaseException = exc
        # the file pyarrow takes the schema from is unreadable: read every footer to find which
        import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

        bad: dict[int, BaseException] = {}
        for i, path in enumerate(self.files):
            try:
                pq.read_metadata(path)
            except (self.pa.ArrowException, OSError) as footer_error:
                bad[i] = footer_error
        if not bad:
            raise DataError(f"cannot open the Parquet files of {self.label}: {error}") from error
        first = min(bad)
        if not self.skip_bad or len(bad) == len(self.files):
            raise _unreadable(self.files[first], bad[first]) from bad[first]
        for i, why in bad.items():
            self.mark_bad(i, str(why))
        try:
            return ds.dataset([p for i, p in enumerate(self.files) if i not in bad], **options)
        except (self.pa.ArrowException, OSError) as exc:
            raise DataError(f"cannot open the Parquet files of {self.label}: {exc}") from exc

    def mark_bad(self, file: int, reason: str) -> None:
        """Skip ``file`` from now on (on_error='skip'), saying so once."""
        if file not in self.bad:
            self.bad[file] = reason
            log.warning("weft: skipping unreadable Parquet file %s (on_error='skip'): %s", self.files[file], reason)

    # -- the row groups -------------------------------------------------------------------
    def units(self) -> list[tuple[int, int]]:
        """Every row group that may hold matching rows, as (file index, row group id)."""
        with self._lock:
            if self._units is None:
                self._list_units()
            assert self._units is not None
            return self._units

    def _list_units(self) -> None:
        pa, ds = self.pa, self.ds
        found: list[tuple[int, int, Any, dict[str, Any]]] = []
        for fragment in self.dataset.get_fragments(filter=self.expression):
            file = self._index[fragment.path]
            try:
                pieces = fragment.split_by_row_group(self.expression, schema=self.dataset.schema)
            except (pa.ArrowException, OSError) as exc:
                if not self.skip_bad:
                    raise _unreadable(fragment.path, exc) from exc
                self.mark_bad(file, str(exc))
                continue
            values = ds.get_partition_keys(fragment.partition_expression)
            found.extend((file, piece.row_groups[0].id, piece, values) for piece in pieces)
        found.sort(key=lambda f: (f[0], f[1]))
        self._fragments = [f[2] for f in found]
        self._partition_values = [f[3] for f in found]
        self._units = [(f[0], f[1]) for f in found]
        self.unit_index = {unit: i for i, unit in enumerate(self._units)}

    def unit_of(self, fragment: Any) -> int:
        """The unit a scanned batch's fragment is."""
        return self.unit_index[(self._index[fragment.path], fragment.row_groups[0].id)]

    def scan(self, units: Sequence[int], batch_rows: int) -> Iterator[Any]:
        """Tagged record batches of ``units``, in that order."""
        ds = self.ds
        subset = ds.FileSystemDataset([self._fragments[u] for u in units], schema=self.dataset.schema,
                                      format=self.dataset.format, filesystem=self.dataset.filesystem)
        scanner = subset.scanner(columns=self.scan_columns, filter=self.expression, batch_size=batch_rows,
                                 fragment_readahead=FRAGMENT_READAHEAD, batch_readahead=BATCH_READAHEAD)
        return iter(scanner.scan_batches())

    def columns_of(self, unit: int, batch: Any) -> list[np.ndarray]:
        """One scanned batch as NumPy columns, in the order of ``columns``; partition
        fields (constant in a file) are filled in, not scanned."""
        pa = self.pa
        n = batch.num_rows
        scanned = {name: to_numpy(batch.column(i), pa) for i, name in enumerate(self.scan_columns)}
        out = []
        for name in self.columns:
            column = scanned.get(name)
            if column is None:
                # one value, converted as a scanned column would be (without pandas), repeated
                value = self._partition_values[unit].get(name)
                column = np.repeat(to_numpy(pa.array([value], type=self._dtypes[name]), pa), n)
            out.append(column)
        return out


class ParquetSource(UnitSource):
    """Rows (dicts) or batches (dicts of columns) of a :class:`ParquetCatalog`.

    Keys: ``(file index, row group id, row)``, where ``row`` counts the matching rows of
    that row group (a batch's key names its first row).
    """

    unit_noun = "row group"

    def __init__(self, catalog: ParquetCatalog, *, rows: bool, batch_rows: int,
                 transforms: tuple[Transform, ...], on_error: str) -> None:
        super().__init__(name=f"parquet:{catalog.label}", transforms=transforms, on_error=on_error)
        self._catalog = catalog
        self._rows = rows
        self._batch_rows = batch_rows
        # the scan in progress: the units it reads (from position _scan_start of the order)
        # and which of them the last batch came from
        self._scan: Iterator[Any] | None = None
        self._scan_units: list[int] = []
        self._scan_start = 0
        self._scan_at = 0
        self._drop = 0  # rows of the first unit handed on before a resume: read, not handed on
        self._careful = 0  # units still to read one at a time, looking for a failing file
        self._row_iter: Iterator[tuple[Any, ...]] | None = None
        self.rows_read = 0

    def unit_count(self) -> int:
        return len(self._catalog.units())

    def unit_id(self, unit: int) -> tuple[int, ...]:
        return self._catalog.units()[unit]

    def skipped_count(self) -> int:
        return len(self._catalog.bad)

    def stop_reading(self) -> None:
        self._scan = None
        self._row_iter = None

    # -- scanning ---------------------------------------------------------------------------
    def _start(self) -> None:
        """Scan from the position: the rest of the order, or only the unit there while
        looking for a failing file."""
        order, catalog = self.order(), self._catalog
        units = catalog.units()
        pos = self._pos
        while pos < len(order) and units[int(order[pos])][0] in catalog.bad:
            pos += 1  # a file found unreadable earlier
        self.at(pos, self._offset if pos == self._pos else 0)
        end = min(len(order), pos + 1) if self._careful else len(order)
        self._scan_units = [int(u) for u in order[pos:end]]
        self._scan_start, self._scan_at, self._drop = pos, 0, self._offset
        self._scan = catalog.scan(self._scan_units, self._batch_rows) if self._scan_units else iter(())
        self.units_started += 1 if self._scan_units else 0

    def _next_batch(self) -> tuple[int, Any] | None:
        """The next non-empty batch and its unit, the position moved to that unit; None
        at the end of the order."""
        while True:
            if self._scan is None:
                if self._pos >= len(self.order()):
                    return None
                self._start()
            assert self._scan is not None
            try:
                tagged = next(self._scan)
            except StopIteration:
                self._scan = None
                if self._careful:
                    self._careful -= 1
                self.at(self._scan_start + len(self._scan_units), 0)
                continue
            except (self._catalog.pa.ArrowException, OSError) as exc:
                self._failed(exc)
                continue
            unit = self._catalog.unit_of(tagged.fragment)
            if unit != self._scan_units[self._scan_at]:  # on to the next unit (some yield no rows)
                while self._scan_units[self._scan_at] != unit:
                    self._scan_at += 1
                self._drop = 0
                self.units_started += 1
                self.at(self._scan_start + self._scan_at, 0)
            batch = tagged.record_batch
            self.rows_read += batch.num_rows
            if self._drop:
                cut = min(self._drop, batch.num_rows)
                self._drop -= cut
                batch = batch.slice(cut)
            if batch.num_rows:
                return unit, batch

    def _failed(self, exc: BaseException) -> None:
        """Reading one unit at a time, the failing one is at the position: raise naming its
        file, or skip that file. Otherwise go on one unit at a time from the position."""
        self.stop_reading()
        if not self._careful:
            self._careful = _CAREFUL_UNITS
            return
        self._careful = 0
        file = self._catalog.units()[int(self.order()[self._pos])][0]
        if not self.skip_bad:
            raise _unreadable(self._catalog.files[file], exc) from exc
        self._catalog.mark_bad(file, str(exc))
        self.at(self._pos, 0)

    # -- items ------------------------------------------------------------------------------
    def next(self) -> tuple[Key, Any]:
        start = time.perf_counter()
        try:
            while True:
                rows = self._row_iter
                if rows is not None:
                    row = next(rows, None)
                    if row is not None:
                        assert self._ident is not None
                        key = (*self._ident, self._offset)
                        self._offset += 1
                        self.items += 1
                        return key, dict(zip(self._catalog.columns, row, strict=True))
                    self._row_iter = None
                got = self._next_batch()
                if got is None:
                    raise StopIteration
                unit, batch = got
                columns = self._catalog.columns_of(unit, batch)
                if not self._rows:
                    assert self._ident is not None
                    key = (*self._ident, self._offset)
                    self._offset += batch.num_rows
                    self.items += 1
                    return key, dict(zip(self._catalog.columns, columns, strict=True))
                self._row_iter = zip(*columns, strict=True)
        finally:
            self.busy += time.perf_counter() - start

    def fetch(self, keys: Sequence[Key]) -> list[Any]:
        """Rows or batches by key, each row group they are in scanned once."""
        catalog = self._catalog
        wanted: dict[int, set[int]] = {}
        for key in keys:
            file, group, row = cast(tuple[int, int, int], key)
            unit = catalog.unit_index.get((file, group))
            if unit is None:
                raise ResumeError(f"{self.name}: the state holds rows of row group {group} of file {file}, "
                                  "which this data does not have: load a state saved over the same data")
            wanted.setdefault(unit, set()).add(row)
        found: dict[Key, Any] = {}
        for unit, rows in wanted.items():
            file, group = catalog.units()[unit]
            first = 0
            for tagged in catalog.scan([unit], self._batch_rows):
                batch = tagged.record_batch
                n = batch.num_rows
                hits = [r for r in rows if first <= r < first + n] if self._rows else [first] * (first in rows)
                if hits:
                    columns = catalog.columns_of(unit, batch)
                    for r in hits:
                        found[(file, group, r)] = (
                            {name: col[r - first] for name, col in zip(catalog.columns, columns, strict=True)}
                            if self._rows else dict(zip(catalog.columns, columns, strict=True)))
                first += n
        missing = [k for k in keys if k not in found]
        if missing:
            raise ResumeError(f"{self.name}: the state holds rows {missing[:3]} that the data no longer has: "
                              "load a state saved over the same data")
        return [found[k] for k in keys]

    def _extra_statistics(self) -> dict[str, Any]:
        out = super()._extra_statistics()
        out["extra"]["rows_read"] = float(self.rows_read)
        return out
