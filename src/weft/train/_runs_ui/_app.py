"""The runs page's HTTP app: one static page and a small JSON API (OpenAPI at /openapi.json).

Every API call answers JSON; a bad query parameter gets 400 (or FastAPI's 422) naming
it, an unknown run 404, a missing or wrong bearer token 401. JSON has no NaN or
infinity: such metric values travel as the strings "NaN", "Infinity", "-Infinity".
The page and its vendored scripts are served from the package: nothing is loaded from
the internet, so the page works offline. (Imported only by the runs page: FastAPI is
imported at the top.)
"""

from __future__ import annotations

import hmac
import json
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

# FastAPI reads the route signatures' annotations from this module's globals
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from weft.train._runs_ui._filter import FilterError
from weft.train._runs_ui._store import NotFound, Store

__all__ = ["create_app", "static_dir"]

MAX_IDS = 100          # runs one chart or comparison may ask for
MAX_KEYS = 50


def static_dir() -> Path:
    return Path(str(resources.files("weft.train._runs_ui") / "static"))


def _split(text: str | None, what: str, most: int) -> list[str]:
    items = [t for t in (text or "").split(",") if t]
    if len(items) > most:
        raise FilterError(f"{what} lists {len(items)} entries; at most {most} at once")
    return items


def create_app(store: Store, *, token: str | None = None) -> FastAPI:
    """The FastAPI app serving ``store``; with ``token``, the API asks for ``Authorization: Bearer``."""
    def answer(body: Any) -> Response:
        return Response(json.dumps(body, allow_nan=False, separators=(",", ":")), media_type="application/json",
                        headers={"cache-control": "no-store"})

    async def authorized(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            raise _Refused(401, "missing or wrong bearer token: send 'Authorization: Bearer <token>' "
                                "(the page takes it from the URL printed by `weft runs ui`)")

    app = FastAPI(title="weft runs", version="1", docs_url=None, redoc_url=None,
                  description="Browse and compare the runs of a weft tracker database (read-only). "
                              "Non-finite metric values are sent as the strings NaN, Infinity, -Infinity.")

    @app.exception_handler(FilterError)
    async def bad_request(request: Request, exc: FilterError) -> Response:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(NotFound)
    async def not_found(request: Request, exc: NotFound) -> Response:
        return JSONResponse({"error": exc.args[0] if exc.args else str(exc)}, status_code=404)

    @app.exception_handler(_Refused)
    async def refused(request: Request, exc: _Refused) -> Response:
        return JSONResponse({"error": exc.message}, status_code=exc.status, headers={"www-authenticate": "Bearer"})

    api = [Depends(authorized)]
    page = static_dir()

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        return FileResponse(page / "index.html", headers={"cache-control": "no-store"})

    app.mount("/static", StaticFiles(directory=page), name="static")

    @app.get("/api/keys", dependencies=api, summary="Param, metric and tag names, with how many runs have each")
    def keys() -> Response:
        return answer(store.keys())

    @app.get("/api/runs", dependencies=api, summary="One page of runs, filtered and sorted")
    def runs(
        filter: Annotated[str, Query(max_length=2000, description="e.g. `lr < 0.01 and tag:baseline`")] = "",
        sort: Annotated[str, Query(max_length=300, description="name, status, created, duration, "
                                   "param:KEY, tag:KEY, metric:KEY[:min|:max]")] = "created",
        order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        ids: Annotated[str | None, Query(description="comma-separated run ids: only these")] = None,
    ) -> Response:
        result = store.runs(filter_text=filter, sort=sort, descending=order == "desc", offset=offset, limit=limit,
                            ids=_split(ids, "ids", 1000))
        return answer({"total": result.total, "offset": offset, "limit": limit, "runs": result.runs})

    @app.get("/api/runs/{run_id}", dependencies=api, summary="One run: params, tags, metrics, artifacts, error")
    def run(run_id: str) -> Response:
        return answer(store.run(run_id))

    @app.get("/api/series", dependencies=api,
             summary="Metric histories of runs, each downsampled to at most max_points (extremes kept)")
    def series(
        runs: Annotated[str, Query(min_length=1, description="comma-separated run ids")],
        keys: Annotated[str, Query(min_length=1, description="comma-separated metric names")],
        max_points: Annotated[int, Query(ge=10, le=20_000)] = 1500,
        from_step: Annotated[int | None, Query(alias="from")] = None,
        to_step: Annotated[int | None, Query(alias="to")] = None,
    ) -> Response:
        run_ids, metric_keys = _split(runs, "runs", MAX_IDS), _split(keys, "keys", MAX_KEYS)
        if not run_ids or not metric_keys:
            raise FilterError("name at least one run (runs=ID,...) and one metric (keys=loss,...)")
        return answer(store.series(run_ids, metric_keys, max_points=max_points, lo=from_step, hi=to_step))

    @app.get("/api/updates", dependencies=api,
             summary="Points logged after a cursor to these runs, their statuses and the next cursor")
    def updates(
        since: Annotated[int, Query(ge=0, description="the cursor from /api/series or the last /api/updates")],
        runs: Annotated[str, Query(description="comma-separated run ids")] = "",
        keys: Annotated[str, Query(description="comma-separated metric names (default: all)")] = "",
        limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
    ) -> Response:
        return answer(store.updates(since, _split(runs, "runs", MAX_IDS), _split(keys, "keys", MAX_KEYS),
                                    limit=limit))

    return app


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message

