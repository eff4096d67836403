"""How the process backend's workers start: the start method, what the fork server
imports first, and a worker that re-runs a script without a main guard.

Workers start from multiprocessing's fork server where the platform has one (as
Python 3.14 chose), else they are spawned. The server has imported the worker's code
and NumPy once, so a new worker costs a fork, not an interpreter start and its imports.
That matters most on a free-threaded 3.13 interpreter: a thread that finds a lock held
by its own critical section spins with ``sched_yield`` before it parks, an interpreter's
start and imports do that hundreds of times, and beside busy processes each yield gives
the core away for a time slice (two spawned workers took 29 s to boot, 1.2 s quietly;
forked from the server, 3.4 s).

Spawned or forked from the server, a worker imports the main module again and inherits
nothing else of its owner's state.
"""

from __future__ import annotations

import ast
import functools
import multiprocessing
import os
import sys
from typing import Any

from weft.errors import BackendUnavailable

__all__ = ["WORKER_NAME", "default_start_method", "exit_if_unguarded_worker", "not_started",
           "preload_fork_server", "unguarded_main_script"]

#: The name of every worker process (``ps``, and :func:`exit_if_unguarded_worker`).
WORKER_NAME = "weft-process-worker"
#: Exit status of a worker that re-ran an unguarded script up to code that starts worker
#: processes (see :func:`exit_if_unguarded_worker`).
_UNGUARDED_SCRIPT_EXIT = 86
#: What the fork server imports before it forks any worker (see preload_fork_server).
_FORK_SERVER_PRELOAD = ("weft.exec._worker", "numpy")


def default_start_method() -> str:
    """The fork server where the platform has one, else spawn."""
    return "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"


def preload_fork_server() -> None:
    """Have the fork server import the worker's code, unless the program configured it.

    multiprocessing's own default preloads the main module into the server, which runs a
    script's top level there: a script without a main guard would then start workers
    from inside the server. Without it the main module is imported per worker, exactly
    as with spawn (and :func:`exit_if_unguarded_worker` behaves the same for both).
    The server is one per process and starts on first use; later calls change nothing.
    """
    from multiprocessing import forkserver

    server: Any = forkserver._forkserver  # type: ignore[attr-defined]  # the process's one server
    if getattr(server, "_preload_modules", None) == ["__main__"] and getattr(server, "_forkserver_pid", 0) is None:
        server.set_forkserver_preload(list(_FORK_SERVER_PRELOAD))


def exit_if_unguarded_worker() -> None:
    """End this process quietly if it is a starting worker re-running the user's script.

    Every new worker imports the main module; a script without an
    ``if __name__ == "__main__":`` guard then reaches its pipeline again while the worker
    is still starting. multiprocessing would print a bootstrap traceback per worker;
    instead the worker exits with a status its owner recognises, and the owner raises
    one :class:`~weft.errors.BackendUnavailable` that says what to do (:func:`not_started`).
    """
    # multiprocessing sets _inheriting while a starting process imports the main module
    # (and names the process before that): only weft's own workers are ended here
    me = multiprocessing.current_process()
    if getattr(me, "_inheriting", False) and me.name == WORKER_NAME:
        os._exit(_UNGUARDED_SCRIPT_EXIT)


def unguarded_main_script() -> str | None:
    """The main script's path when every worker process would re-run it: its source has
    no ``if __name__ == "__main__":`` guard at the top level. None when workers import it
    safely, or when there is no script to read (an interactive session, ``python -c``,
    an installed command) or it cannot be read (then workers are tried, and
    :func:`not_started` says what went wrong if they fail).

    A worker imports the main module by the name ``python -m`` ran it under, else from
    its file, as multiprocessing does; either way its unguarded top level runs again.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    path = getattr(spec, "origin", None) if getattr(spec, "name", None) else getattr(main, "__file__", None)
    if not isinstance(path, str) or not path.endswith(".py"):
        return None
    return None if _has_main_guard(path) else path


@functools.lru_cache(maxsize=8)
def _has_main_guard(path: str) -> bool:
    """Whether the module at ``path`` tests ``__name__`` against "__main__" at its top level
    (True when it cannot be read or parsed: nothing is known against it)."""
    try:
        with open(path, "rb") as source:
            tree = ast.parse(source.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return True
    for statement in tree.body:
        if isinstance(statement, ast.If):
            names = {n.id for n in ast.walk(statement.test) if isinstance(n, ast.Name)}
            constants = {n.value for n in ast.walk(statement.test) if isinstance(n, ast.Constant)}
            if "__name__" in names and "__main__" in constants:
                return True
    return False


def not_started(how: str, exitcode: int | None) -> BackendUnavailable:
    """The error for a worker that ended (``how``: as told to the user) before it was ready."""
    if exitcode == _UNGUARDED_SCRIPT_EXIT:
        return BackendUnavailable(
            "the script has no `if __name__ == \"__main__\":` guard: every worker process imports the "
            "main module again, so each worker re-ran the script up to the point that starts workers. "
            "Put the script's entry point under `if __name__ == \"__main__\":`, or use backend='thread'")
    return BackendUnavailable(
        f"a worker process {how} before it was ready (see its error output above). Each worker imports "
        "the main module again: guard the script's entry point with `if __name__ == \"__main__\":`, make "
        "the function importable, or use backend='thread'")
