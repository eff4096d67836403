"""A server's configuration, and the backend its models run on."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import InitVar, dataclass, fields
from typing import Any

from weft._checks import check_int, check_number, check_one_of
from weft.errors import ConfigError
from weft.exec._policy import BackendChoice, for_model, validate_backend
from weft.serve._batcher import BatcherConfig

__all__ = ["DEFAULT_PORT", "LOG_LEVELS", "ServerConfig", "choose_backends"]

#: The port Triton and KServe serve the V2 REST protocol on, so clients' defaults find us.
DEFAULT_PORT = 8000
#: Enough for a batch of images as binary tensors (32 x 3x224x224 FP32 is 18 MiB), small
#: enough that a few hostile bodies cannot exhaust memory.
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
#: uvicorn's log levels.
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

# The old spellings: name -> (new name, its units per second). They keep working for one
# release, with a DeprecationWarning.
_RENAMED = {"max_delay_ms": ("max_delay", 1000), "timeout_s": ("timeout", 1),
            "drain_timeout_s": ("drain_timeout", 1)}


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How a server listens, batches and protects itself.

    ``port=0`` picks a free port. ``backend`` is ``"auto"`` (each model on its own:
    threads when the GIL is off or the model releases it, else processes), ``"thread"``,
    ``"process"`` or a backend added with :func:`weft.exec.register` (then for every model). Durations are seconds: ``max_delay`` is the
    longest a batch waits to fill, from its oldest request; ``timeout`` the longest a
    request waits (a request may shorten it); ``drain_timeout`` the longest a shutdown
    waits for the requests in flight. ``queue_size`` bounds the inference requests a
    model holds, waiting or computing (503 beyond).

    ``max_delay_ms``, ``timeout_s`` and ``drain_timeout_s`` are the old spellings: they
    still work in this release, with a DeprecationWarning.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    max_batch_size: int = 32
    max_delay: float = 0.002
    workers: int = 2
    backend: str = "auto"
    queue_size: int = 256
    timeout: float = 30.0
    token: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    drain_timeout: float = 30.0
    log_level: str = "warning"
    max_delay_ms: InitVar[float | None] = None
    timeout_s: InitVar[float | None] = None
    drain_timeout_s: InitVar[float | None] = None

    def __post_init__(self, max_delay_ms: float | None, timeout_s: float | None,
                      drain_timeout_s: float | None) -> None:
        for old, value in (("max_delay_ms", max_delay_ms), ("timeout_s", timeout_s),
                           ("drain_timeout_s", drain_timeout_s)):
            if value is not None:
                self._take_old_name(old, value)
        check_int("port", self.port, minimum=0, maximum=65535)
        check_number("timeout", self.timeout, strict=True)
        check_number("drain_timeout", self.drain_timeout)
        check_int("max_body_bytes", self.max_body_bytes)
        check_one_of("log_level", self.log_level, LOG_LEVELS)
        if self.backend == "serial":
            raise ConfigError("backend 'serial' would run models on the event loop thread, which could then not "
                              "read requests: use 'thread' (with workers=1 for one batch at a time)")
        validate_backend(self.backend, exclude=("serial",))
        self.batching()

    def _take_old_name(self, old: str, value: Any) -> None:
        new, per_second = _RENAMED[old]
        # stacklevel 4: this method, __post_init__, the dataclass __init__, the caller.
        warnings.warn(f"ServerConfig({old}=...) is deprecated: pass {new}= in seconds "
                      f"({old} is removed in the next release)", DeprecationWarning, stacklevel=4)
        check_number(old, value)
        if getattr(self, new) != _FIELD_DEFAULTS[new]:
            raise ConfigError(f"ServerConfig got both {new}= and {old}=: pass {new}= (seconds) only")
        object.__setattr__(self, new, value / per_second)

    def batching(self) -> BatcherConfig:
        """Each model's batcher configuration (also validates the batching fields)."""
        return BatcherConfig(max_batch_size=self.max_batch_size, max_delay=self.max_delay,
                             queue_size=self.queue_size, workers=self.workers)


_FIELD_DEFAULTS = {f.name: f.default for f in fields(ServerConfig)}


def choose_backends(config: ServerConfig, specs: Sequence[Any]) -> list[BackendChoice]:
    """The executor backend for each of these models, in order, with the reason (see
    ``weft.exec._policy``). A backend named in ``config`` applies to every model."""
    if config.backend != "auto":
        requested = BackendChoice(backend=config.backend, reason=f"backend={config.backend!r} was requested")
        return [requested for _ in specs]
    from weft.serve._adapters import declared_gil

    return [for_model(*declared_gil(spec)) for spec in specs]
