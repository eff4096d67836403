"""The runs page's filter and sort language, compiled to SQL over the tracker's tables.

A filter is conditions joined by ``and``, ``or``, ``not`` and parentheses::

    lr < 0.01 and tag:baseline
    param:optimizer = "adam" or (metric:loss:min <= 0.2 and status != failed)
    name ~ sweep            (~ : contains, ignoring case)

A field is ``name``, ``id``, ``status``, ``created``, ``ended``, ``duration`` (seconds),
``param:KEY``, ``tag:KEY``, ``metric:KEY`` (the last value; ``metric:KEY:min`` and
``metric:KEY:max`` the extremes), or a bare KEY that names exactly one param, metric
or tag. A field alone is a presence test; ``tag:X`` alone also holds when some tag's
value is ``X``. Values are numbers (``1e-3``, ``inf``), quoted or bare strings,
``true`` / ``false``. Every value is bound as an SQL parameter, never spliced.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BUILTIN_FIELDS", "Compiled", "FilterError", "compile_field", "compile_filter"]


class FilterError(ValueError):
    """A filter or sort expression the page cannot use; the message says why and what to write."""


# builtin field -> SQL over the runs table; duration counts to now for a run still going
BUILTIN_FIELDS = {
    "name": "runs.name",
    "id": "runs.id",
    "status": "weft_status(runs.status, runs.pid, runs.host)",
    "created": "runs.created",
    "ended": "runs.ended",
    "duration": "(COALESCE(runs.ended, weft_now()) - runs.created)",
}
_PREFIXES = {"param": "param", "params": "param", "tag": "tag", "tags": "tag", "metric": "metric",
             "metrics": "metric"}
_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "=": "=", "==": "=", "!=": "!=", "<>": "!="}
_TOKEN = re.compile(r"""
    \s*(?:
      (?P<number>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))(?![\w.])
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    | (?P<op><=|>=|==|!=|<>|<|>|=|~)
    | (?P<paren>[()])
    | (?P<colon>:)
    | (?P<word>[A-Za-z_][\w./\-]*)
    )""", re.VERBOSE)
_MAX_TERMS = 64


@dataclass(frozen=True)
class Compiled:
    """An SQL expression over ``runs`` with its positional arguments."""

    sql: str
    args: tuple[object, ...]


@dataclass(frozen=True)
class Keys:
    """The names a bare field may refer to."""

    params: frozenset[str]
    metrics: frozenset[str]
    tags: frozenset[str]


@dataclass
class _Token:
    kind: str
    text: str
    at: int


def _tokens(text: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise FilterError(f"cannot read {text[pos:].strip()[:20]!r} at character {pos + 1} of {text!r}; "
                              "quote strings that hold spaces or symbols")
        kind = match.lastgroup or ""
        out.append(_Token(kind, match.group(kind), match.start(kind)))
        pos = match.end()
    return out


def _unquote(text: str) -> str:
    body = text[1:-1]
    return re.sub(r"\\(.)", r"\1", body)


def json_path(key: str) -> str:
    if '"' in key:
        raise FilterError(f"key {key!r} holds a double quote, which the page cannot look up")
    return f'$."{key}"'


class _Parser:
    def __init__(self, text: str, keys: Keys | Callable[[], Keys]) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0
        self._keys = keys
        self.terms = 0

    @property
    def keys(self) -> Keys:
        if callable(self._keys):
            self._keys = self._keys()
        return self._keys

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.peek()
        if token is None:
            raise FilterError(f"{self.text!r} ends too early: a condition is missing")
        self.pos += 1
        return token

    def word(self, *words: str) -> bool:
        token = self.peek()
        if token is not None and token.kind == "word" and token.text.lower() in words:
            self.pos += 1
            return True
        return False

    # expr := and ('or' and)* ; and := not ('and' not)* ; not := 'not' not | atom
    def expr(self, depth: int = 0) -> Compiled:
        if depth > 32:
            raise FilterError("the filter nests too deeply")
        parts = [self.conjunction(depth)]
        while self.word("or"):
            parts.append(self.conjunction(depth))
        return _join(parts, "OR")

    def conjunction(self, depth: int) -> Compiled:
        parts = [self.negation(depth)]
        while self.word("and"):
            parts.append(self.negation(depth))
        return _join(parts, "AND")

    def negation(self, depth: int) -> Compiled:
        if self.word("not"):
            inner = self.negation(depth + 1)
            return Compiled(f"(NOT COALESCE({inner.sql}, 0))", inner.args)
        return self.atom(depth)

    def atom(self, depth: int) -> Compiled:
        self.terms += 1
        if self.terms > _MAX_TERMS:
            raise FilterError(f"the filter has more than {_MAX_TERMS} conditions")
        token = self.peek()
        if token is not None and token.kind == "paren" and token.text == "(":
            self.pos += 1
            inner = self.expr(depth + 1)
            closing = self.take()
            if closing.text != ")":
                raise FilterError(f"expected ')' at character {closing.at + 1} of {self.text!r}")
            return Compiled(f"({inner.sql})", inner.args)
        field = self.field()
        token = self.peek()
        if token is None or token.kind != "op":
            return field.presence()
        self.pos += 1
        value = self.value()
        return field.compare(token.text, value)

    def field(self) -> _Field:
        token = self.take()
        if token.kind != "word":
            raise FilterError(f"expected a field (name, status, param:KEY, metric:KEY, tag:KEY, ...) at character "
                              f"{token.at + 1} of {self.text!r}, got {token.text!r}")
        name = token.text
        nxt = self.peek()
        if name.lower() in _PREFIXES and nxt is not None and nxt.kind == "colon":
            self.pos += 1
            key_token = self.take()
            if key_token.kind not in ("word", "string", "number"):
                raise FilterError(f"expected a key after {name}: in {self.text!r}")
            key = _unquote(key_token.text) if key_token.kind == "string" else key_token.text
            kind = _PREFIXES[name.lower()]
            reduce = "last"
            nxt = self.peek()
            if kind == "metric" and nxt is not None and nxt.kind == "colon":
                self.pos += 1
                reduce = self.take().text.lower()
                if reduce not in ("last", "min", "max"):
                    raise FilterError(f"metric:{key}:{reduce} is not known: use :last, :min or :max")
            return _Field(kind, key, reduce)
        if name.lower() in BUILTIN_FIELDS:
            return _Field("builtin", name.lower())
        return self.resolve(name)

    def resolve(self, name: str) -> _Field:
        keys = self.keys
        found = [kind for kind, names in (("param", keys.params), ("metric", keys.metrics), ("tag", keys.tags))
                 if name in names]
        if len(found) > 1:
            raise FilterError(f"{name!r} is both a {found[0]} and a {found[1]}: write "
                              f"{found[0]}:{name} or {found[1]}:{name}")
        if not found:
            raise FilterError(f"no param, metric or tag is named {name!r} (params: {_few(keys.params)}; metrics: "
                              f"{_few(keys.metrics)}; tags: {_few(keys.tags)}); fields: "
                              f"{', '.join(BUILTIN_FIELDS)}")
        return _Field(found[0], name)

    def value(self) -> object:
        token = self.take()
        if token.kind == "number":
            number = float(token.text)
            return int(number) if number.is_integer() and abs(number) < 2**53 and "." not in token.text \
                and "e" not in token.text.lower() else number
        if token.kind == "string":
            return _unquote(token.text)
        if token.kind == "word":
            lowered = token.text.lower()
            specials: dict[str, object] = {"true": 1, "false": 0, "inf": float("inf"), "+inf": float("inf"),
                                           "-inf": float("-inf")}
            return specials.get(lowered, token.text)
        raise FilterError(f"expected a value at character {token.at + 1} of {self.text!r}, got {token.text!r}")


@dataclass(frozen=True)
class _Field:
    kind: str          # builtin, param, tag, metric
    key: str
    reduce: str = "last"

    def sql(self) -> Compiled:
        if self.kind == "builtin":
            return Compiled(BUILTIN_FIELDS[self.key], ())
        if self.kind == "param":
            return Compiled("json_extract(runs.params, ?)", (json_path(self.key),))
        if self.kind == "tag":
            return Compiled("json_extract(runs.tags, ?)", (json_path(self.key),))
        column = {"last": "last_value", "min": "min_value", "max": "max_value"}[self.reduce]
        return Compiled(f"(SELECT s.{column} FROM metric_summary AS s WHERE s.run_id = runs.id AND s.key = ?)",
                        (self.key,))

    def presence(self) -> Compiled:
        if self.kind == "builtin":
            raise FilterError(f"{self.key!r} alone is not a condition: compare it, e.g. {self.key} = ...")
        if self.kind == "param":
            return Compiled("(json_type(runs.params, ?) IS NOT NULL)", (json_path(self.key),))
        if self.kind == "tag":
            return Compiled("(json_type(runs.tags, ?) IS NOT NULL OR EXISTS (SELECT 1 FROM json_each(runs.tags) "
                            "AS t WHERE t.value = ?))", (json_path(self.key), self.key))
        return Compiled("EXISTS (SELECT 1 FROM metric_summary AS s WHERE s.run_id = runs.id AND s.key = ?)",
                        (self.key,))

    def compare(self, op: str, value: object) -> Compiled:
        left = self.sql()
        if op == "~":
            return Compiled(f"(instr(lower(CAST({left.sql} AS TEXT)), lower(?)) > 0)", (*left.args, str(value)))
        return Compiled(f"({left.sql} {_OPS[op]} ?)", (*left.args, value))


def _join(parts: list[Compiled], word: str) -> Compiled:
    if len(parts) == 1:
        return parts[0]
    return Compiled("(" + f" {word} ".join(p.sql for p in parts) + ")", tuple(a for p in parts for a in p.args))


def _few(names: frozenset[str]) -> str:
    listed = sorted(names)
    return ", ".join(listed[:8]) + (", ..." if len(listed) > 8 else "") if listed else "none"


def compile_filter(text: str, keys: Keys | Callable[[], Keys]) -> Compiled | None:
    """The SQL condition for a filter expression; ``None`` for an empty one."""
    if len(text) > 2000:
        raise FilterError("the filter is longer than 2000 characters")
    parser = _Parser(text, keys)
    if not parser.tokens:
        return None
    compiled = parser.expr()
    rest = parser.peek()
    if rest is not None:
        raise FilterError(f"unexpected {rest.text!r} at character {rest.at + 1} of {text!r}: join conditions "
                          "with and / or")
    return compiled


def compile_field(text: str, keys: Keys | Callable[[], Keys]) -> Compiled:
    """The SQL value of one field (a sort column)."""
    parser = _Parser(text, keys)
    if not parser.tokens:
        raise FilterError("the sort column is empty")
    field = parser.field()
    rest = parser.peek()
    if rest is not None:
        raise FilterError(f"sort takes one field, e.g. metric:loss or param:lr; got {text!r}")
    return field.sql()
