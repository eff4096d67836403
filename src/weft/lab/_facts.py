"""Facts about the interpreter a lab subprocess runs on. Stdlib and weft.runtime only."""

from __future__ import annotations

import platform
import sys
import sysconfig

from weft import runtime

__all__ = ["interpreter_facts", "jit_status"]


def jit_status() -> tuple[bool, str]:
    """Whether this interpreter has the experimental JIT compiled in, and how we know."""
    probe = getattr(sys, "_jit", None)
    if probe is not None and hasattr(probe, "is_available"):
        available = bool(probe.is_available())
        return available, f"sys._jit.is_available() is {available}"
    flags = " ".join(str(sysconfig.get_config_var(v) or "")
                     for v in ("PY_CORE_CFLAGS", "CFLAGS", "CONFIG_ARGS"))
    if "_Py_JIT" in flags or "--enable-experimental-jit" in flags:
        return True, "built with --enable-experimental-jit (_Py_JIT)"
    return False, (f"Python {platform.python_version()} at {sys.executable} was built without "
                   "the experimental JIT (no sys._jit, no _Py_JIT / --enable-experimental-jit "
                   "in its build flags)")


def interpreter_facts() -> dict[str, object]:
    """Version, build and GIL state, as JSON-ready values."""
    free_threaded = runtime.is_free_threaded_build()
    version = platform.python_version()
    jit, _ = jit_status()
    config_args = str(sysconfig.get_config_var("CONFIG_ARGS") or "")
    return {
        "executable": sys.executable,
        "version": version,
        "implementation": platform.python_implementation(),
        "free_threaded": free_threaded,
        "gil_enabled": runtime.gil_enabled(),
        "usable_cores": runtime.usable_cores(),
        "jit_available": jit,
        # Profile-guided and link-time optimisation change speed by 10-30% on their own.
        "pgo": "--enable-optimizations" in config_args,
        "lto": "--with-lto" in config_args,
        "label": f"{version}{'t' if free_threaded else ''}",
    }
