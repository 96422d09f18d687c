"""The explorer's HTTP API as an OpenAPI 3 document (served at ``/api/openapi.json``): every
route, its parameters with their ranges, and its answers, written from the same ranges and
choices the checks hold requests to, so a client or a fuzzer can be generated from it."""

from __future__ import annotations

from typing import Any

from glowflow.explorer.checks import AMOUNT_RANGE, PATHS, SEED_RANGE, TEMPERATURE_RANGE
from glowflow.explorer.explorer import Explorer
from glowflow.version import __version__

_ERROR = {
    "description": "a mistake in the request, said in one line",
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_PNG = {
    "description": "the picture",
    "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
}
_JSON = {"description": "what the page shows", "content": {"application/json": {
    "schema": {"type": "object"}}}}  # fmt: skip
_IMAGE_ID = {"type": "string", "maxLength": 64, "examples": ["g0", "g1"]}


def _param(name: str, schema: dict[str, Any], required: bool = False, doc: str = "") -> dict:
    return {"name": name, "in": "query", "required": required, "schema": schema,
            "description": doc}  # fmt: skip


def _number(lo: float, hi: float) -> dict[str, Any]:
    return {"type": "number", "minimum": lo, "maximum": hi}


def _get(summary: str, params: list[dict], ok: dict, errors: tuple[int, ...] = (400,)) -> dict:
    answers = {"200": ok, **{str(code): _ERROR for code in errors}}
    return {"get": {"summary": summary, "parameters": params, "responses": answers}}


def openapi_document(explorer: Explorer, max_upload_bytes: int) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API serving ``explorer``."""
    k = explorer.config.num_classes
    label = _param("label", {"type": "integer", "minimum": 0, "maximum": (k or 1) - 1},
                   doc="the class to draw (class-conditional models only)")  # fmt: skip
    sample = [_param("seed", {"type": "integer", "minimum": SEED_RANGE[0],
                              "maximum": SEED_RANGE[1]}, doc="the sample's seed"),
              _param("temperature", _number(*TEMPERATURE_RANGE), doc="default 0.7"),
              *([label] if k is not None else [])]  # fmt: skip
    edit = [_param("image", _IMAGE_ID, True, "the id of a held image"),
            *(_param(name, _number(*AMOUNT_RANGE), doc="how far to move along the direction")
              for name in explorer.attributes)]  # fmt: skip
    levels = {"type": "string", "pattern": f"^[abm]{{{explorer.config.levels}}}$"}
    mix = [_param("a", _IMAGE_ID, True), _param("b", _IMAGE_ID, True),
           _param("t", _number(0.0, 1.0), doc="0 gives a, 1 gives b; default 0.5"),
           _param("path", {"type": "string", "enum": list(PATHS)}),
           _param("levels", levels, doc="per level, finest first: a, b or m (mixed)")]  # fmt: skip
    binary = {"schema": {"type": "string", "format": "binary"}}
    upload = {
        "post": {
            "summary": "upload an image file: framed, encoded and held under an id",
            "requestBody": {"required": True, "content": {
                "image/png": binary, "image/jpeg": binary,
                "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                                   "properties": {"file": binary["schema"]}}},
            }},
            "responses": {"200": _JSON, "400": _ERROR, "413": _ERROR, "415": _ERROR},
        },
    }  # fmt: skip
    name = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "maxLength": 68, "examples": ["g0", "g0.png"]},
    }
    image = _get("a held image: its facts, or its picture as NAME.png", [name], _JSON, (404,))
    image["get"]["responses"]["200"] = {
        "description": "the image's facts (JSON), or its picture (for a name ending .png)",
        "content": {**_JSON["content"], **_PNG["content"]},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "glowflow explorer", "version": __version__,
                 "description": f"Uploads of at most {max_upload_bytes} bytes."},
        "paths": {
            "/api/model": _get("the model and what the page needs of it", [], _JSON, ()),
            "/api/attributes": _get("the attributes an edit may move along", [], _JSON, ()),
            "/api/sample.png": _get("a sample at a temperature", sample, _PNG),
            "/api/sample.json": _get("a sample's facts and command", sample, _JSON),
            "/api/images": upload,
            "/api/images/{name}": image,
            "/api/edit.png": _get("a held image moved along attributes", edit, _PNG, (400, 404)),
            "/api/edit.json": _get("an edit's facts and command", edit, _JSON, (400, 404)),
            "/api/mix.png": _get("two held images mixed level by level", mix, _PNG, (400, 404)),
            "/api/mix.json": _get("a mix's facts and command", mix, _JSON, (400, 404)),
            "/api/openapi.json": _get("this document", [], _JSON, ()),
        },
        "components": {"schemas": {"Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {"type": "string", "pattern": "^[^\\n]*$"}},
        }}},
    }  # fmt: skip
