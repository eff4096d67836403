"""JSON Lines, streamed: one record per line, resumed by seeking to a byte offset."""

from __future__ import annotations

import json
import os
import time
from typing import IO, Any

from weft.data._node import Key, Node, NodeState
from weft.errors import ConfigError, ResumeError

__all__ = ["JsonlSource"]


class JsonlSource(Node):
    """Reads ``path`` line by line. State: (lines read, byte offset of the next line).

    Resume seeks straight to the offset: nothing before it is read again
    (``lines_read`` in the statistics counts the lines actually read). Blank lines
    are skipped but counted, so keys stay line numbers (0-based).
    """

    kind = "source"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(None, name=f"jsonl:{os.path.basename(os.fspath(path))}")
        self.path = os.fspath(path)
        self._file: IO[bytes] | None = None
        self._line = 0
        self._offset = 0
        self.lines_read = 0

    def _open(self) -> IO[bytes]:
        if self._file is None:
            self._file = open(self.path, "rb")  # noqa: SIM115 - closed in close()
            self._file.seek(self._offset)
        return self._file

    def next(self) -> tuple[Key, Any]:
        f = self._open()
        start = time.perf_counter()
        while True:
            raw = f.readline()
            if not raw:
                self.busy += time.perf_counter() - start
                raise StopIteration
            line = self._line
            self._line = line + 1
            self._offset += len(raw)
            self.lines_read += 1
            if raw.strip():
                break
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise ConfigError(f"{self.path}, line {line + 1} is not valid JSON ({exc}): fix or remove that "
                              "line; every non-blank line of a JSON Lines file holds one JSON value") from exc
        self.busy += time.perf_counter() - start
        self.items += 1
        return line, value

    def state(self) -> Any:
        return NodeState((self._line, self._offset), None)

    def restore(self, state: Any) -> None:
        position = (0, 0) if state is None else self.parts(state).own
        try:
            line, offset = position
        except (TypeError, ValueError):
            line = offset = None
        if not (isinstance(line, int) and isinstance(offset, int) and line >= 0 and offset >= 0):
            raise ResumeError(f"jsonl position {position!r} is not (line, byte offset): "
                              "load a state saved from the same pipeline")
        size = os.path.getsize(self.path)
        if offset > size:
            raise ResumeError(f"byte offset {offset} is past the end of {self.path} ({size} bytes): "
                              "the file changed since the state was saved")
        self._line, self._offset = line, offset
        if self._file is not None:
            self._file.seek(offset)

    def export(self, state: Any) -> dict[str, Any]:
        out = super().export(state)
        if "state" in out:
            out["state"] = list(out["state"])
        return out

    def load(self, data: Any) -> Any:
        loaded = super().load(data)
        if loaded is None:
            return None
        own = loaded.own
        return NodeState(tuple(own) if isinstance(own, (list, tuple)) else own, None)

    def _extra_statistics(self) -> dict[str, Any]:
        return {"extra": {"lines_read": float(self.lines_read)}}

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
