"""The FastAPI app: metadata, metrics, OpenAPI; it also declares the infer routes.

The infer and health routes are normally answered before FastAPI by the ASGI layer
in :mod:`weft.serve._app`, which is given this app for every other route; the
declarations here keep the OpenAPI document complete and answer identically when
this app is mounted on its own. Both answer through the same
:class:`~weft.serve._service.Service`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# FastAPI resolves endpoint annotations from this module's globals, so these imports are
# module-level; this module is only imported when a server starts.
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from weft.serve._http import HTTPError, error_body, header_length
from weft.serve._types import DATATYPES

if TYPE_CHECKING:
    from weft.serve._service import Service

__all__ = ["build_fastapi"]

_TENSOR = {
    "type": "object", "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string", "enum": list(DATATYPES)},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 0}}},
        "data": {"type": "array", "description": "row-major values, flat or nested"},
    },
}
_INFER_BODY = {
    "required": True,
    "content": {
        "application/json": {"schema": {
            "type": "object", "required": ["inputs"],
            "properties": {
                "id": {"type": "string"},
                "parameters": {"type": "object", "properties": {
                    "binary_data_output": {"type": "boolean"},
                    "timeout": {"type": "integer", "minimum": 0, "description": "microseconds; shortens the server's"}}},
                "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
                "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                    "name": {"type": "string"},
                    "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}}}}},
            }}},
        "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                                                "description": "JSON header (length in Inference-Header-Content-Length) "
                                                               "followed by binary tensor data"}},
    },
}
_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "malformed request"}, 401: {"description": "missing or wrong bearer token"},
    404: {"description": "unknown model or version"}, 413: {"description": "request body too large"},
    500: {"description": "the model failed"}, 503: {"description": "overloaded or not ready (see Retry-After)"},
    504: {"description": "timed out"},
}


def build_fastapi(service: Service) -> FastAPI:
    """The FastAPI app answering every V2 route for ``service``."""
    # No /docs or /redoc: their pages load Swagger UI / ReDoc from a CDN, blank offline and a
    # third-party script on the server's origin. /openapi.json describes every route.
    api = FastAPI(title="weft serve", version=service.server_version, docs_url=None, redoc_url=None,
                  description="Open Inference Protocol (V2) REST with the binary tensor data extension.")
    readiness = service.readiness

    def fail(exc: HTTPError) -> Response:
        return Response(error_body(str(exc)), status_code=exc.status, media_type="application/json",
                        headers={k.decode(): v.decode() for k, v in exc.headers})

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code)

    @api.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return JSONResponse({"error": str(exc.errors())}, status_code=400)

    @api.get("/v2", summary="Server metadata")
    async def server_metadata() -> dict[str, Any]:
        return {"name": "weft", "version": service.server_version, "extensions": ["binary_tensor_data"]}

    @api.get("/v2/health/live", summary="Liveness")
    async def live() -> Response:
        return Response(status_code=200)

    @api.get("/v2/health/ready", summary="Readiness (503 while loading or draining)", responses={503: {}})
    async def ready() -> Response:
        return Response(readiness.health_body(), status_code=readiness.status)

    async def metadata(name: str, version: str | None) -> Response:
        try:
            return JSONResponse(service.model(name, version).metadata())
        except HTTPError as exc:
            return fail(exc)

    async def config(name: str, version: str | None) -> Response:
        try:
            return JSONResponse(service.model(name, version).config())
        except HTTPError as exc:
            return fail(exc)

    async def model_ready(name: str, version: str | None) -> Response:
        try:
            service.model(name, version)
        except HTTPError as exc:
            return fail(exc)
        return Response(status_code=readiness.status)

    async def infer(name: str, version: str | None, request: Request) -> Response:
        try:
            model = service.model(name, version)
            body = await request.body()
            if len(body) > service.max_body_bytes:
                raise HTTPError(413, f"the request body exceeds the limit of {service.max_body_bytes} bytes")
            answer = await service.infer(model, body, header_length(request.scope["headers"]))
        except HTTPError as exc:
            return fail(exc)
        return Response(answer.payload, headers={k.decode(): v.decode() for k, v in answer.headers})

    @api.get("/v2/models/{name}", summary="Model metadata", responses={404: {}})
    async def model_metadata(name: str) -> Response:
        return await metadata(name, None)

    @api.get("/v2/models/{name}/versions/{version}", summary="Model metadata (one version)", responses={404: {}})
    async def model_version_metadata(name: str, version: str) -> Response:
        return await metadata(name, version)

    @api.get("/v2/models/{name}/config", summary="Model configuration (max_batch_size, as in Triton)",
             responses={404: {}})
    async def model_config(name: str) -> Response:
        return await config(name, None)

    @api.get("/v2/models/{name}/versions/{version}/config", summary="Model configuration (one version)",
             responses={404: {}})
    async def model_version_config(name: str, version: str) -> Response:
        return await config(name, version)

    @api.get("/v2/models/{name}/ready", summary="Model readiness", responses={404: {}, 503: {}})
    async def model_is_ready(name: str) -> Response:
        return await model_ready(name, None)

    @api.get("/v2/models/{name}/versions/{version}/ready", summary="Model readiness (one version)")
    async def model_version_is_ready(name: str, version: str) -> Response:
        return await model_ready(name, version)

    @api.post("/v2/models/{name}/infer", summary="Inference", openapi_extra={"requestBody": _INFER_BODY},
              responses=_ERRORS)
    async def model_infer(name: str, request: Request) -> Response:
        return await infer(name, None, request)

    @api.post("/v2/models/{name}/versions/{version}/infer", summary="Inference (one version)",
              openapi_extra={"requestBody": _INFER_BODY}, responses=_ERRORS)
    async def model_version_infer(name: str, version: str, request: Request) -> Response:
        return await infer(name, version, request)

    @api.get("/metrics", summary="Prometheus metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type=service.metrics.content_type)

    return api
