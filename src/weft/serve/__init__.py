"""weft.serve: a batched model server speaking the Open Inference Protocol (V2).

Put a model behind ``weft serve path/to/model.py:Model``: requests are batched
dynamically, overload is answered with 503 + Retry-After, shutdown drains every
request in flight, and any V2 client (``tritonclient[http]``, KServe's) works::

    with weft.serve.serve_in_thread(["examples/mlp.py:Model"]) as url:
        y = weft.serve.Client(url).infer("mlp", {"x": x})["y"]

Names load on first use, so ``import weft.serve`` stays light.
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING
from typing import Any as _Any

if _TYPE_CHECKING:
    from weft.serve._adapters import LoadedModel, adapter_names, load_model, register_adapter
    from weft.serve._batcher import Batcher, BatcherConfig, BatcherStatistics
    from weft.serve._client import Client
    from weft.serve._codec import (
        InferRequest,
        InferResponse,
        RequestedOutput,
        decode_request,
        decode_response,
        encode_request,
        encode_response,
    )
    from weft.serve._config import ServerConfig
    from weft.serve._server import Server, ServerStatistics, serve_in_thread
    from weft.serve._types import DATATYPES, Model, TensorSpec

__all__ = [
    "Batcher",
    "BatcherConfig",
    "BatcherStatistics",
    "Client",
    "DATATYPES",
    "InferRequest",
    "InferResponse",
    "LoadedModel",
    "Model",
    "RequestedOutput",
    "Server",
    "ServerConfig",
    "ServerStatistics",
    "TensorSpec",
    "adapter_names",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
    "load_model",
    "register_adapter",
    "serve_in_thread",
]

_LAZY = {
    "DATATYPES": "_types", "Model": "_types", "TensorSpec": "_types",
    "Batcher": "_batcher", "BatcherConfig": "_batcher", "BatcherStatistics": "_batcher",
    "Client": "_client",
    "InferRequest": "_codec", "InferResponse": "_codec", "RequestedOutput": "_codec",
    "decode_request": "_codec", "decode_response": "_codec", "encode_request": "_codec",
    "encode_response": "_codec",
    "LoadedModel": "_adapters", "adapter_names": "_adapters", "load_model": "_adapters",
    "register_adapter": "_adapters",
    "ServerConfig": "_config",
    "Server": "_server", "ServerStatistics": "_server", "serve_in_thread": "_server",
}


def __getattr__(name: str) -> _Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'weft.serve' has no attribute {name!r}")
    return getattr(_importlib.import_module(f"weft.serve.{module}"), name)


def __dir__() -> list[str]:
    """The public names only (they load on first use)."""
    return sorted(__all__)
