"""weft's exceptions: one tree, rooted at :class:`WeftError`.

Every leaf also subclasses the builtin it refines, so ``except ValueError``
keeps working for callers who do not know weft::

    WeftError
    ├── ConfigError(ValueError)          a bad argument or setting
    ├── BackendUnavailable(RuntimeError) a backend that cannot run here
    ├── ExecutorClosed(RuntimeError)     work submitted after close()
    ├── WorkerDied(RuntimeError)         a worker process died with work in flight
    ├── RemoteError(RuntimeError)        a worker raised something that cannot be sent back as is
    ├── ResumeError(ValueError)          a state_dict that does not fit the pipeline
    ├── DataError(ValueError)            a data file that is truncated, corrupt or not in its format
    ├── CheckpointError(RuntimeError)    a missing, truncated or corrupted checkpoint
    ├── TrackerError(RuntimeError)       the experiment database refused an operation
    ├── ServeError(RuntimeError)         the model server failed to start or answer
    │   ├── ModelError                   a model failed to load or to predict
    │   └── ProtocolError(ValueError)    a request that breaks the inference protocol
    └── LabError(RuntimeError)           an experiment could not be measured
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ExecutorClosed",
    "LabError",
    "ModelError",
    "ProtocolError",
    "RemoteError",
    "ResumeError",
    "ServeError",
    "TrackerError",
    "WeftError",
    "WorkerDied",
]


class WeftError(Exception):
    """Root of every exception weft raises on purpose."""


class ConfigError(WeftError, ValueError):
    """An argument or setting is invalid; the message names it and what is allowed."""


class BackendUnavailable(WeftError, RuntimeError):
    """The requested execution backend cannot run on this machine or interpreter."""


class ExecutorClosed(WeftError, RuntimeError):
    """Work was submitted to an executor that has been closed."""


class WorkerDied(WeftError, RuntimeError):
    """A worker process died while it held work, and retries were exhausted.

    ``items`` lists the indices (or descriptions) of the work that was lost.
    """

    def __init__(self, message: str, *, items: tuple[object, ...] = (), exitcode: int | None = None) -> None:
        super().__init__(message)
        self.items = items
        self.exitcode = exitcode


class RemoteError(WeftError, RuntimeError):
    """A worker process raised an exception that could not be sent back intact.

    The original type name, message and traceback text are kept in the message.
    """


class ResumeError(WeftError, ValueError):
    """A state_dict does not match the object it is loaded into."""


class DataError(WeftError, ValueError):
    """A data file a source reads is truncated, corrupt or not in its format; the
    message names the file (and the member or line where it knows one)."""


class CheckpointError(WeftError, RuntimeError):
    """A checkpoint is missing, truncated or corrupted; the message names the file."""


class TrackerError(WeftError, RuntimeError):
    """The experiment tracker could not complete an operation."""


class ServeError(WeftError, RuntimeError):
    """The model server could not start, load a model or answer."""


class ModelError(ServeError):
    """A model failed to load or to predict."""


class ProtocolError(ServeError, ValueError):
    """A request breaks the Open Inference Protocol; the message says which field."""


class LabError(WeftError, RuntimeError):
    """A Lab experiment could not be measured."""
