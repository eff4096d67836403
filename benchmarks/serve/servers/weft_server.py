"""weft peer launcher for when the ``weft serve`` command is not available: the same
``Server.run()`` the command calls, configured from the same options."""

from __future__ import annotations

import argparse

from weft.serve import Server, ServerConfig


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("models", nargs="+")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--max-batch-size", type=int, default=32)
    p.add_argument("--max-delay-ms", type=float, default=2.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--log-level", default="warning")
    a = p.parse_args()
    config = ServerConfig(host=a.host, port=a.port, max_batch_size=a.max_batch_size,
                          max_delay=a.max_delay_ms / 1000, workers=a.workers, log_level=a.log_level)
    Server(a.models, config).run()


if __name__ == "__main__":
    main()
