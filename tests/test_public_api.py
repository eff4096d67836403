"""Each public module's __all__ is sorted and names exactly its public attributes."""

from __future__ import annotations

import importlib

import pytest

PUBLIC_MODULES = ["weft", "weft.data", "weft.errors", "weft.exec", "weft.lab", "weft.runtime", "weft.serve", "weft.train"]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(module.__all__)
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    for attr in exported:
        assert getattr(module, attr) is not None, f"{name}.{attr} does not resolve"


def test_errors_tree() -> None:
    import weft.errors as e

    for attr in e.__all__:
        cls = getattr(e, attr)
        assert issubclass(cls, e.WeftError)
        if cls is not e.WeftError:
            assert any(b.__module__ == "builtins" and b is not object
                       for b in cls.__mro__ if b not in (e.WeftError,)), f"{attr} has no builtin base"


def test_import_weft_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, weft; print(','.join(m for m in ('numpy','fastapi','torch','matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "", f"import weft pulled in {out.stdout.strip()}"
