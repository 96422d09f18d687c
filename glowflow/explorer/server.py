"""The latent explorer's web app: one static page and a small JSON/PNG API over an
``glowflow.explorer.explorer.Explorer`` (the ``glowflow[serve]`` extra: Starlette, served
by uvicorn).

Routes are a fixed table: no part of a request's path is ever used to open a file, so a path
trick meets the same 404 as any unknown page. Every model call runs in a worker thread, and
nothing on the event loop waits for one: a route that only looks up what the explorer holds
answers while model calls run. ``glowflow.explorer.guard`` checks every request first (its
host, origin, token and query). A request's mistake gets a 4xx with ``{"error": "one line"}``;
uploads are image files or a multipart form, read up to a size limit (a larger body gets a 413
once it has been read off the connection). The API is published as an OpenAPI document at
``/api/openapi.json``; the README's "Latent explorer" section describes it.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any, Callable

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from glowflow.explorer.checks import ExplorerError, UnknownImage
from glowflow.explorer.entries import Picture, png_bytes
from glowflow.explorer.explorer import Explorer
from glowflow.explorer.faces import ImageInputError
from glowflow.explorer.guard import Guard, Policy, Query
from glowflow.explorer.openapi import openapi_document

MAX_UPLOAD_BYTES = 10 * 2**20
#: Uploads read and encoded at once (each waits for one of the explorer's decoders); the rest
#: wait without a thread or their body, so edits and samples keep their worker threads.
UPLOADS_AT_ONCE = 4
_DRAIN_FACTOR = 16  # past this many times the limit, stop reading an oversized body
_STATIC = {  # URL path -> (file in glowflow/explorer/static, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/explorer.js": ("explorer.js", "text/javascript; charset=utf-8"),
    "/static/explorer.css": ("explorer.css", "text/css; charset=utf-8"),
}
_NO_STORE = {"Cache-Control": "no-store"}


#: What an upload's Content-Type may be, besides any ``image/...``.
UPLOAD_TYPES = ("multipart/form-data", "application/octet-stream")
_INTEGER = re.compile(r"-?[0-9]{1,12}")  # ASCII digits only: "²" passes str.isdigit


class TooLarge(Exception):
    pass


class UnsupportedType(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _query(request: Request) -> Query:
    """The request's query, as the guard in front of every route (``create_app``) parsed
    it."""
    return request.scope["glowflow.query"]


def _one(request: Request, name: str, required: bool = True) -> str | None:
    values = _query(request).values.get(name, [])
    if len(values) > 1:
        raise ExplorerError(f"{name} is given {len(values)} times; give it once")
    if not values:
        if required:
            raise ExplorerError(f"the query needs {name}=...")
        return None
    return values[0]


def _number(request: Request, name: str, default: float | None = None) -> float:
    text = _one(request, name, required=default is None)
    if text is None:
        return float(default)
    try:
        return float(text)
    except ValueError:
        raise ExplorerError(f"{name} must be a number, got {text[:40]!r}") from None


def _integer(request: Request, name: str, default: int | None = None) -> int | None:
    text = _one(request, name, required=False)
    if text is None:
        return default
    if not _INTEGER.fullmatch(text):
        raise ExplorerError(f"{name} must be a whole number such as 7, got {text[:40]!r}")
    return int(text)


def _amounts(request: Request) -> dict[str, float]:
    """Every query parameter but ``image``: an attribute name and its amount."""
    out = {}
    for name in _query(request).names():
        if name == "image":
            continue
        out[name] = _number(request, name)
    return out


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, or ``TooLarge`` once it passes ``limit`` bytes. An oversized body
    is still read off the connection (up to a bound), so the client receives the 413."""
    declared = request.headers.get("content-length", "")
    size, chunks, too_large = 0, [], declared.isdigit() and int(declared) > limit
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            too_large = True
        if too_large:
            if size > _DRAIN_FACTOR * limit:
                break
            continue
        chunks.append(chunk)
    if too_large:
        raise TooLarge
    return b"".join(chunks)


async def _uploaded_file(request: Request, limit: int) -> bytes:
    """The image file of a POST: the multipart field ``file``, or a body of an image type.

    Raises:
        UnsupportedType: for another content type (a form or text that a web page may send
            across sites without asking first).
    """
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in UPLOAD_TYPES and not kind.startswith("image/"):
        raise UnsupportedType(kind)
    body = await _read_body(request, limit)
    if kind != "multipart/form-data":
        return body
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    form = await Request(request.scope, replay).form(max_files=1, max_fields=16)
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ExplorerError("the form has no file field: send the image as the field 'file'")
    return await upload.read()


# ----------------------------------------------------------------------------- the handlers
# Each handler finds the explorer, the upload limit and the static files on ``app.state``.
def _explorer(request: Request) -> Explorer:
    return request.app.state.explorer


def _run(fn: Callable, *args: Any):
    """``fn(*args)`` in a worker thread: a model call never blocks the event loop."""
    return run_in_threadpool(fn, *args)


def _png(picture: Picture) -> Response:
    return Response(png_bytes(picture.image), media_type="image/png", headers=_NO_STORE)


async def _facts(request: Request, picture: Picture) -> dict[str, Any]:
    """What the page shows beside a picture: its bits/dim, and a warning if it overflowed."""
    bpd = await _run(_explorer(request).picture_bpd, picture.image)
    return {"bpd": bpd, "overflow": picture.overflow, "warning": picture.warning}


async def page(request: Request) -> Response:
    body, kind = request.app.state.static[request.url.path]
    return Response(body, media_type=kind)


async def openapi(request: Request) -> Response:
    return JSONResponse(request.app.state.openapi)


async def model(request: Request) -> Response:
    limit = request.app.state.max_upload_bytes
    return JSONResponse({**_explorer(request).model_info(), "max_upload_bytes": limit})


async def attributes(request: Request) -> Response:
    return JSONResponse({"attributes": _explorer(request).attributes})


def _sample_args(request: Request) -> tuple[int, float, int | None]:
    seed = _integer(request, "seed", 0)
    return seed, _number(request, "temperature", 0.7), _integer(request, "label")


async def sample_png(request: Request) -> Response:
    return _png(await _run(_explorer(request).sample, *_sample_args(request)))


async def sample_json(request: Request) -> Response:
    explorer = _explorer(request)
    seed, temperature, label = _sample_args(request)
    facts = await _facts(request, await _run(explorer.sample, seed, temperature, label))
    return JSONResponse({
        **facts, "seed": seed, "temperature": temperature, "label": label,
        "command": explorer.sample_command(seed, temperature, label),
    })  # fmt: skip


async def add_image(request: Request) -> Response:
    # Uploads take turns here, on the event loop, before their bodies are read: however many
    # arrive, at most UPLOADS_AT_ONCE bodies are in memory and worker threads left for edits.
    async with request.app.state.uploads:
        data = await _uploaded_file(request, request.app.state.max_upload_bytes)
        entry = await _run(_explorer(request).add_image, data)
    return JSONResponse(entry.to_dict())


async def image(request: Request) -> Response:
    name = request.path_params["name"]
    image_id, png = (name[:-4], True) if name.endswith(".png") else (name, False)
    entry = _explorer(request).image(image_id)
    if png:
        return Response(png_bytes(entry.image), media_type="image/png")
    return JSONResponse(entry.to_dict())


async def edit_png(request: Request) -> Response:
    return _png(await _run(_explorer(request).edit, _one(request, "image"), _amounts(request)))


async def edit_json(request: Request) -> Response:
    explorer = _explorer(request)
    image_id, amounts = _one(request, "image"), _amounts(request)
    facts = await _facts(request, await _run(explorer.edit, image_id, amounts))
    return JSONResponse({
        **facts, "amounts": explorer.check_amounts(amounts),
        "command": explorer.edit_command(image_id, amounts),
    })  # fmt: skip


def _mix_args(request: Request) -> tuple[str, str, float, str, str | None]:
    path = _one(request, "path", False) or "linear"
    t = _number(request, "t", 0.5)
    return _one(request, "a"), _one(request, "b"), t, path, _one(request, "levels", False)


async def mix_png(request: Request) -> Response:
    return _png(await _run(_explorer(request).mix, *_mix_args(request)))


async def mix_json(request: Request) -> Response:
    args = _mix_args(request)
    facts = await _facts(request, await _run(_explorer(request).mix, *args))
    return JSONResponse({**facts, "command": _explorer(request).mix_command(*args)})


# ----------------------------------------------------------------------------- the errors
async def explorer_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, UnknownImage):
        return _error(404, str(exc), unknown_image=exc.image_id)
    return _error(400, str(exc))


async def unsupported_type(request: Request, exc: UnsupportedType) -> Response:
    return _error(
        415,
        f"an upload's Content-Type must be image/... or multipart/form-data, got "
        f"{exc.kind[:60]!r}; send the image file as such",
    )


async def too_large(request: Request, exc: Exception) -> Response:
    mib = request.app.state.max_upload_bytes // 2**20
    return _error(413, f"the upload is over {mib} MiB; send a smaller image")


async def http_error(request: Request, exc: HTTPException) -> Response:
    if exc.status_code == 404:
        return _error(404, f"no such page: {request.url.path[:80]}")
    if exc.status_code == 405:
        return _error(405, f"{request.method} is not allowed on {request.url.path[:80]}")
    return _error(exc.status_code, str(exc.detail)[:200])


# ----------------------------------------------------------------------------- the app
API = [
    Route("/api/model", model),
    Route("/api/attributes", attributes),
    Route("/api/sample.png", sample_png),
    Route("/api/sample.json", sample_json),
    Route("/api/images", add_image, methods=["POST"]),
    Route("/api/images/{name}", image),
    Route("/api/edit.png", edit_png),
    Route("/api/edit.json", edit_json),
    Route("/api/mix.png", mix_png),
    Route("/api/mix.json", mix_json),
    Route("/api/openapi.json", openapi),
]
ERROR_HANDLERS = {
    ExplorerError: explorer_error,
    ImageInputError: explorer_error,
    TooLarge: too_large,
    UnsupportedType: unsupported_type,
    HTTPException: http_error,
}


def static_files() -> dict[str, tuple[bytes, str]]:
    """URL path -> (the file's bytes, its content type), read once from the package."""
    folder = resources.files("glowflow.explorer").joinpath("static")
    return {
        path: (folder.joinpath(name).read_bytes(), kind) for path, (name, kind) in _STATIC.items()
    }


def create_app(
    explorer: Explorer, max_upload_bytes: int = MAX_UPLOAD_BYTES, policy: Policy | None = None
) -> Starlette:
    """The ASGI app serving ``explorer``: the page at ``/`` and the API under ``/api/``, behind
    the ``Guard`` of ``policy`` (default: the loopback host
    names, no other origin, no token)."""
    static = static_files()
    routes = [Route(path, page) for path in static] + API
    middleware = [Middleware(Guard, policy=policy or Policy.make())]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=ERROR_HANDLERS)
    app.state.explorer = explorer
    app.state.max_upload_bytes = max_upload_bytes
    app.state.uploads = anyio.CapacityLimiter(UPLOADS_AT_ONCE)
    app.state.static = static
    app.state.openapi = openapi_document(explorer, max_upload_bytes)
    return app
