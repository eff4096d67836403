"""From what a user names (a file, a directory, a glob, braces, a list of those) to the
sorted files a source reads.

One rule for every source: a path or pattern that matches nothing is a
:class:`~weft.errors.ConfigError` naming it, never an empty pipeline.
"""

from __future__ import annotations

import glob as globlib
import os
import re
from collections.abc import Sequence
from typing import Union

from weft.errors import ConfigError

__all__ = ["Location", "expand_braces", "nothing_matches", "resolve_files", "root_of"]

#: a path, a pattern, or a list of them
Location = Union[str, "os.PathLike[str]", Sequence[Union[str, "os.PathLike[str]"]]]

_BRACES = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")
_MAGIC = re.compile(r"[*?\[]")
#: Names a directory scan passes over: Spark and Hive leave _SUCCESS, _temporary/ and
#: .crc files beside the data; pyarrow's own discovery skips the same prefixes.
_IGNORED_PREFIXES = ("_", ".")


def expand_braces(pattern: str) -> list[str]:
    """WebDataset's brace notation: ``{000..099}`` is a zero-padded range (both ends
    included), ``{a,b}`` a choice; several braces multiply."""
    match = _BRACES.search(pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[:match.start()], pattern[match.end():]
    body = match.group(1)
    numbers = _RANGE.match(body)
    if numbers:
        lo, hi = int(numbers.group(1)), int(numbers.group(2))
        width = len(numbers.group(1)) if numbers.group(1).startswith("0") else 0
        step = 1 if hi >= lo else -1
        choices = [str(i).zfill(width) for i in range(lo, hi + step, step)]
    else:
        choices = body.split(",")
    return [out for choice in choices for out in expand_braces(head + choice + tail)]


def nothing_matches(source: str, location: object, detail: str = "") -> ConfigError:
    """The one error of every source whose path or pattern matches no file."""
    shown = os.fspath(location) if isinstance(location, (str, os.PathLike)) else location
    where = f" (relative paths start at {os.getcwd()!r})" if isinstance(shown, str) and not os.path.isabs(shown) else ""
    return ConfigError(f"{source}: {shown!r} matches no file{where}{': ' + detail if detail else ''}")


def _scan_directory(root: str, suffixes: tuple[str, ...]) -> list[str]:
    found: list[str] = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(_IGNORED_PREFIXES))
        for name in files:
            if name.startswith(_IGNORED_PREFIXES):
                continue
            if suffixes and not name.lower().endswith(suffixes):
                continue
            found.append(os.path.join(dirpath, name))
    return sorted(found)


def _expand_one(pattern: str, suffixes: tuple[str, ...]) -> list[str]:
    out: list[str] = []
    for one in expand_braces(pattern):
        if os.path.isdir(one):
            out.extend(_scan_directory(one, suffixes))
        elif _MAGIC.search(one):
            out.extend(sorted(p for p in globlib.glob(one, recursive=True) if os.path.isfile(p)))
        elif os.path.isfile(one):
            out.append(one)
    return out


def resolve_files(location: Location, *, source: str, suffixes: tuple[str, ...] = ()) -> list[str]:
    """The files ``location`` names, in order, each once.

    A directory contributes every file below it (sorted; names starting with ``_`` or
    ``.`` are passed over, and with ``suffixes`` only names ending in one of them); a
    glob (``**`` recurses) or a brace pattern the files it matches, sorted; a list the
    files of each entry in list order. Raises ConfigError naming the first entry that
    matches nothing.
    """
    entries = [location] if isinstance(location, (str, os.PathLike)) else list(location)
    if not entries:
        raise ConfigError(f"{source}: got an empty list of paths: pass a file, a directory or a glob")
    files: list[str] = []
    seen: set[str] = set()
    for entry in entries:
        if not isinstance(entry, (str, os.PathLike)):
            raise ConfigError(f"{source}: expected a path, a glob or a list of them, got {type(entry).__name__}")
        pattern = os.fspath(entry)
        matched = _expand_one(pattern, suffixes)
        if not matched:
            detail = ""
            if os.path.isdir(pattern) and suffixes:
                detail = f"the directory holds no {' / '.join(suffixes)} file"
            elif os.path.isdir(pattern):
                detail = "the directory holds no data file (names starting with '_' or '.' are passed over)"
            raise nothing_matches(source, pattern, detail)
        for path in matched:
            if path not in seen:
                seen.add(path)
                files.append(path)
    return files


def root_of(location: Location) -> str | None:
    """The directory partition names are read below: a directory itself, the part of a
    glob before its first wildcard, a file's own directory; None for a list whose
    entries have different roots."""
    entries = [location] if isinstance(location, (str, os.PathLike)) else list(location)
    roots: set[str] = set()
    for entry in entries:
        pattern = os.fspath(entry)
        if os.path.isdir(pattern):
            roots.add(os.path.normpath(pattern))
            continue
        cut = min((m.start() for m in (_MAGIC.search(pattern), _BRACES.search(pattern)) if m), default=None)
        if cut is None:
            roots.add(os.path.dirname(os.path.normpath(pattern)) or ".")
        else:
            roots.add(os.path.dirname(pattern[:cut]) or ".")
    return roots.pop() if len(roots) == 1 else None
