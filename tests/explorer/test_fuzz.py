"""The explorer's HTTP API fuzzed from its own OpenAPI document (schemathesis, in-process over
ASGI): values within the document's ranges and outside them, for every operation. No answer is
a 5xx, every error is one line of JSON, and the server still edits afterwards."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import tiny_explorer
from PIL import Image

schemathesis = pytest.importorskip("schemathesis", reason="the fuzz needs glowflow[test]")
pytest.importorskip("starlette", reason="the explorer is the glowflow[serve] extra")
from hypothesis import HealthCheck, settings  # noqa: E402
from schemathesis.config import GenerationConfig  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from glowflow.explorer.guard import Policy  # noqa: E402
from glowflow.explorer.server import create_app  # noqa: E402

EXAMPLES = 400  # per operation: 3,601 requests in all, under half a minute
CASES: dict[str, int] = {}


EXPLORER = tiny_explorer()
# TestClient names its host "testserver": the guard is told to answer to it
APP = create_app(EXPLORER, max_upload_bytes=2**20, policy=Policy.make(["testserver"]))
schema = schemathesis.openapi.from_asgi("/api/openapi.json", APP)
schema.config.generation = GenerationConfig(modes=list(schemathesis.GenerationMode),
                                            deterministic=True)  # fmt: skip


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_5xx_and_every_error_is_one_line_of_json(case):
    response = case.call()
    label = case.operation.label
    CASES[label] = CASES.get(label, 0) + 1
    assert response.status_code < 500, (label, response.status_code, response.text[:300])
    if response.status_code >= 400:
        message = response.json()["error"]
        assert isinstance(message, str) and message and "\n" not in message, response.text


def test_after_the_fuzz_the_server_still_edits_and_every_operation_was_fuzzed():
    assert set(CASES) == {
        f"{method.upper()} {path}"
        for path, item in APP.state.openapi["paths"].items()
        for method in item
        if path != "/api/openapi.json"  # the document itself is not fuzzed
    }  # fmt: skip
    print(f"fuzz cases: {sum(CASES.values())} ({CASES})")
    client = TestClient(APP, base_url="http://127.0.0.1")
    r = client.get("/api/edit.png?image=g1&Odd=0.5")
    assert r.status_code == 200
    picture = np.asarray(Image.open(io.BytesIO(r.content)))
    assert picture.shape == (16, 16) and picture.dtype == np.uint8
