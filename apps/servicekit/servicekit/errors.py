"""Error answers: every failure is JSON with a "detail" a client can act on.

- malformed JSON body: 400, detail says where parsing failed;
- invalid input: 422, detail names each field ("body.port: Input should be ...");
- HTTPException: its status and detail (FastAPI's own handler);
- anything else: 500 with the request id, the traceback logged once, the worker alive.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from servicekit.requestid import current_request_id

__all__ = ["UnhandledErrorMiddleware", "install_error_handlers"]

logger = logging.getLogger("servicekit.errors")


def install_error_handlers(app: FastAPI) -> None:
    """Answer malformed JSON with 400 and validation errors with 422 naming the fields."""
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    # Only reached if servicekit's own outer middleware fails: UnhandledErrorMiddleware
    # answers everything below it. Starlette re-raises after this, so uvicorn logs it.
    app.add_exception_handler(Exception, _last_resort)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    for err in errors:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", err.get("msg", "invalid JSON"))
            position = err["loc"][1] if len(err["loc"]) > 1 else "?"
            detail = f"request body is not valid JSON: {reason} (at character {position})"
            return JSONResponse({"detail": detail}, status_code=400)
    fields = [
        {"field": ".".join(str(part) for part in err["loc"]), "message": str(err["msg"])}
        for err in errors
    ]
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return JSONResponse({"detail": detail, "errors": fields}, status_code=422)


async def _last_resort(_: Request, __: Exception) -> JSONResponse:
    return _internal_error_response()


def _internal_error_response() -> JSONResponse:
    request_id = current_request_id()
    return JSONResponse(
        {"detail": f"internal server error; quote request id {request_id} when reporting it",
         "request_id": request_id},
        status_code=500,
    )


class UnhandledErrorMiddleware:
    """Turn an exception escaping the app into a 500 JSON answer carrying the request id,
    and log it with its traceback. The exception goes no further, so the server neither
    logs it twice nor drops the connection. If the response had already started, nothing
    more can be sent: the error is logged and the response ends there."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            logger.exception("unhandled error serving %s %s", scope["method"], scope["path"])
            if not started:
                await _internal_error_response()(scope, receive, send)
