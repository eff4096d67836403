"""``weft serve MODEL...``: the model server command."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from weft.serve._server import Server

__all__ = ["register"]

_MIB = 1024 * 1024


def register(app: typer.Typer) -> None:
    app.command(name="serve")(serve)


def _announce(server: Server) -> None:
    stats = server.statistics()
    # One line, on stdout: scripts wait for it and read the URL (its last word).
    typer.echo(f"weft serve: {', '.join(server.models)} (backend {stats.backend}: {stats.backend_reason}); "
               f"listening on {server.url}")
    sys.stdout.flush()


def serve(
    models: Annotated[list[str], typer.Argument(help="Models: path/to/file.py:Name, package.module:Name, "
                                                    "model.onnx or model.pt; name=spec renames.")],
    max_batch_size: Annotated[int, typer.Option(help="Most rows in one batch.")] = 32,
    max_delay_ms: Annotated[float, typer.Option(help="Longest wait for a batch to fill, from its oldest request.")] = 2.0,
    workers: Annotated[int, typer.Option(help="Model workers (batches computing at once).")] = 2,
    port: Annotated[int, typer.Option(help="TCP port (0 = any free port).")] = 8000,
    host: Annotated[str, typer.Option(help="Address to bind; 0.0.0.0 exposes the server to the network.")] = "127.0.0.1",
    backend: Annotated[str, typer.Option(help="auto, thread, process or a backend added with "
                                               "weft.exec.register.")] = "auto",
    queue_size: Annotated[int, typer.Option(help="Requests held at once, waiting or computing; "
                                                   "beyond it answers 503.")] = 256,
    timeout_s: Annotated[float, typer.Option(help="Longest a request may take (504 after).")] = 30.0,
    token: Annotated[str | None, typer.Option(envvar="WEFT_SERVE_TOKEN",
                                              help="Require 'Authorization: Bearer TOKEN' (health stays open).")] = None,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body in MiB (413 beyond).")] = 64.0,
    drain_timeout_s: Annotated[float, typer.Option(help="On SIGTERM, longest wait for requests in flight.")] = 30.0,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve models over the Open Inference Protocol (V2) with dynamic batching."""
    from rich.console import Console
    from rich.logging import RichHandler

    from weft._checks import check_number
    from weft.errors import WeftError
    from weft.serve._config import ServerConfig
    from weft.serve._server import Server

    # Logs go to stderr: stdout carries only the start-up line, which scripts read.
    logging.basicConfig(level=log_level.upper(), format="%(message)s",
                        handlers=[RichHandler(show_path=False, console=Console(stderr=True))])
    try:
        check_number("--max-delay-ms", max_delay_ms)  # named as typed, before it becomes seconds
        config = ServerConfig(host=host, port=port, max_batch_size=max_batch_size, max_delay=max_delay_ms / 1000,
                              workers=workers, backend=backend, queue_size=queue_size, timeout=timeout_s,
                              token=token, max_body_bytes=int(max_body_mb * _MIB),
                              drain_timeout=drain_timeout_s, log_level="warning")
        server = Server(models, config)
        server.run(on_ready=_announce)
    except WeftError as exc:
        typer.echo(f"weft serve: {exc}", err=True)
        raise typer.Exit(2) from None
    if server.statistics().cut:  # the server logged how many requests it could not finish
        raise typer.Exit(1)
