"""The explorer's server under requests a stranger would send: another host's name (DNS
rebinding), a write from another site's page, a form posted across sites, a missing token, a
huge query, and a model call that holds the lock while others ask for what is already held."""

from __future__ import annotations

import io
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from conftest import free_port, tiny_explorer
from conftest import main_in_process as glowflow
from PIL import Image

pytest.importorskip("starlette", reason="the explorer is the glowflow[serve] extra")
from starlette.testclient import TestClient  # noqa: E402

from glowflow.explorer.guard import MAX_PARAMETERS, Policy, Query, host_name  # noqa: E402
from glowflow.explorer.server import create_app  # noqa: E402

LOCAL = "http://127.0.0.1:8000"
TOKEN = "s3cret-token-0123456789"


@pytest.fixture(scope="module")
def explorer():
    return tiny_explorer()


@pytest.fixture(scope="module")
def client(explorer) -> TestClient:
    return TestClient(create_app(explorer), base_url=LOCAL)


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


DIGIT = np.arange(256, dtype=np.uint8).reshape(16, 16)
IMAGE = {"content-type": "image/png"}


# ----------------------------------------------------------------------------- host and origin
@pytest.mark.parametrize("base", ["http://evil.example", "http://evil.example:8000",
                                  "http://127.0.0.1.evil.example",
                                  "http://192.168.1.20:8000"])  # fmt: skip
def test_a_request_naming_another_host_is_refused(explorer, base):
    """DNS rebinding: a page whose own name now points at 127.0.0.1 names itself in Host."""
    r = TestClient(create_app(explorer), base_url=base).get("/api/model")
    assert r.status_code == 400 and "does not answer to the host" in r.json()["error"]
    assert "--allow-host" in r.json()["error"]


@pytest.mark.parametrize("base", ["http://localhost:8000", "http://127.0.0.1", "http://[::1]:80"])
def test_the_loopback_names_are_answered(explorer, base):
    assert TestClient(create_app(explorer), base_url=base).get("/api/model").status_code == 200


def test_hosts_the_user_allows_are_answered(explorer):
    app = create_app(explorer, policy=Policy.make(["box.lan"]))
    assert TestClient(app, base_url="http://box.lan:8000").get("/").status_code == 200
    assert TestClient(app, base_url="http://other.lan").get("/").status_code == 400
    anyone = create_app(explorer, policy=Policy.make(["*"]))
    assert TestClient(anyone, base_url="http://other.lan").get("/").status_code == 200


@pytest.mark.parametrize("header, value", [("host", "[::1]:8000"), ("host", "LOCALHOST"),
                                           ("host", "::1")])  # fmt: skip
def test_host_names_are_read_without_port_or_case(header, value):
    assert host_name(value) in ("::1", "localhost")


@pytest.mark.parametrize(
    "headers, status",
    [({"origin": "http://evil.example"}, 403),
     ({"origin": "null"}, 403),
     ({"origin": "http://127.0.0.1:9999"}, 403),  # another port is another origin
     ({"sec-fetch-site": "cross-site"}, 403),
     ({"origin": LOCAL}, 200),
     ({"sec-fetch-site": "same-origin"}, 200),
     ({}, 200)],  # no browser: a script, which no page controls
)  # fmt: skip
def test_a_write_must_come_from_the_servers_own_page(client, headers, status):
    r = client.post("/api/images", content=png(DIGIT), headers={**IMAGE, **headers})
    assert r.status_code == status, r.text
    if status == 403:
        assert "may not write to this server" in r.json()["error"]


def test_an_origin_the_user_allows_may_write(explorer):
    app = create_app(explorer, policy=Policy.make(origins=["https://notebook.example"]))
    client = TestClient(app, base_url=LOCAL)
    headers = {**IMAGE, "origin": "https://notebook.example"}
    assert client.post("/api/images", content=png(DIGIT), headers=headers).status_code == 200


@pytest.mark.parametrize("kind", ["application/x-www-form-urlencoded", "text/plain", "",
                                  "application/json"])  # fmt: skip
def test_an_upload_must_be_an_image_or_a_form(client, kind):
    """The content types a page may post across sites without a preflight are refused."""
    r = client.post("/api/images", content=png(DIGIT), headers={"content-type": kind})
    assert r.status_code == 415 and "image/... or multipart/form-data" in r.json()["error"]


@pytest.mark.parametrize("path", ["/", "/static/explorer.js", "/api/model", "/api/nothing",
                                  "/api/images/0123456789abcdef"])  # fmt: skip
def test_every_answer_carries_the_security_headers(explorer, client, path):
    refused = TestClient(create_app(explorer), base_url="http://evil.example").get(path)
    for r in (client.get(path), refused):
        assert r.headers["x-content-type-options"] == "nosniff"
        policy = r.headers["content-security-policy"]
        assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy


# ----------------------------------------------------------------------------- the token
def test_with_a_token_every_request_must_carry_it(explorer):
    client = TestClient(create_app(explorer, policy=Policy.make(token=TOKEN)), base_url=LOCAL)
    for path in ("/", "/api/model", "/static/explorer.js", f"/?token={TOKEN}x"):
        r = client.get(path)
        assert r.status_code == 403 and "needs its token" in r.json()["error"], path
    first = client.get(f"/?token={TOKEN}")  # the address printed at start-up
    assert first.status_code == 200 and "HttpOnly" in first.headers["set-cookie"]
    assert client.get("/api/model").status_code == 200  # the cookie carries it from now on
    edit = client.get(f"/api/edit.json?image=g1&Odd=0.5&token={TOKEN}")
    assert edit.status_code == 200 and edit.json()["amounts"] == {"Odd": 0.5}  # not an attribute
    bare = TestClient(create_app(explorer, policy=Policy.make(token=TOKEN)), base_url=LOCAL)
    assert bare.get("/api/model", headers={"authorization": f"Bearer {TOKEN}"}).status_code == 200


def _serve(monkeypatch, *options):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(app))
    monkeypatch.setattr("glowflow.cli.serve._check_port", lambda host, port: None)
    r = glowflow("serve", "--port", "8123", "--checkpoint", "mnist", *options)
    assert r.returncode == 0, r.stderr
    return r.stderr, calls[0]


def test_serve_beyond_loopback_prints_a_token_and_requires_it(monkeypatch):
    said, app = _serve(monkeypatch, "--host", "0.0.0.0", "--allow-host", "box.lan")
    token = said.split("?token=")[1].split()[0]
    assert len(token) >= 24 and "anyone with the address below" in said
    client = TestClient(app, base_url="http://box.lan:8123")
    assert client.get("/api/model").status_code == 403
    assert client.get(f"/api/model?token={token}").status_code == 200
    said, app = _serve(monkeypatch, "--host", "0.0.0.0", "--allow-host", "box.lan", "--no-token")
    assert "?token=" not in said
    assert TestClient(app, base_url="http://box.lan:8123").get("/api/model").status_code == 200


def test_serve_on_loopback_needs_no_token_unless_given_one(monkeypatch):
    said, app = _serve(monkeypatch)
    assert "?token=" not in said
    assert TestClient(app, base_url="http://127.0.0.1:8123").get("/").status_code == 200
    said, app = _serve(monkeypatch, "--token", TOKEN)
    assert f"?token={TOKEN}" in said
    assert TestClient(app, base_url="http://127.0.0.1:8123").get("/").status_code == 403


def test_a_short_token_is_refused_in_one_line():
    r = glowflow("serve", "--port", "8123", "--token", "abc")
    assert r.returncode == 2 and "at least 16 characters" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


# ----------------------------------------------------------------------------- the query
def test_a_query_with_too_many_parameters_is_refused(client):
    many = "&".join("p" for _ in range(20_000))
    r = client.get(f"/api/edit.png?image=g0&{many}")
    assert r.status_code == 414 and "over 4096 bytes" in r.json()["error"]
    short = "&".join(f"a{i}" for i in range(MAX_PARAMETERS + 1))
    r = client.get(f"/api/edit.png?{short}")
    assert r.status_code == 400 and f"over {MAX_PARAMETERS} parameters" in r.json()["error"]


def test_a_query_is_parsed_once(monkeypatch):
    """Every value of every name from one pass: no per-name scan of the whole query."""
    query = Query.parse(b"image=g0&Odd=1&Odd=2&Big=&x=%C2%B2")
    assert query.values == {"image": ["g0"], "Odd": ["1", "2"], "Big": [""], "x": ["\u00b2"]}
    assert query.without("Odd").names() == ["image", "Big", "x"]


# ----------------------------------------------------------------------------- bad images
def test_a_16_bit_png_is_scaled_as_the_data_loaders_scale_it(client):
    levels = (DIGIT.astype(np.uint16) * 257).astype(np.uint16)  # 0..65535
    r = client.post("/api/images", content=png(levels), headers=IMAGE)
    assert r.status_code == 200, r.text
    held = np.asarray(Image.open(io.BytesIO(client.get(f"/api/images/{r.json()['id']}.png")
                                            .content)))  # fmt: skip
    assert np.array_equal(held, DIGIT)  # not clipped to {0, 255}


def test_a_lab_tiff_is_a_400_naming_the_modes_read(client):
    out = io.BytesIO()
    Image.new("LAB", (16, 16), (50, 10, 20)).save(out, format="TIFF")
    r = client.post("/api/images", content=out.getvalue(), headers={"content-type": "image/tiff"})
    assert r.status_code == 400 and "colour mode LAB" in r.json()["error"]
    assert "RGB or grayscale" in r.json()["error"]


# ----------------------------------------------------------------------------- the event loop
def _get(url: str, timeout: float = 20) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class _LiveServer:
    """The app of ``explorer`` served by uvicorn in a thread on a free loopback port."""

    def __init__(self, explorer) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(explorer), host="127.0.0.1", port=self.port,
                                log_level="warning")  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def test_uploads_take_turns_without_taking_the_edits_threads(monkeypatch):
    """However many uploads arrive, a bounded number is read and encoded at once; the rest
    wait without a worker thread, so an edit still answers meanwhile."""
    from glowflow.explorer import explorer as explorer_module
    from glowflow.explorer.server import UPLOADS_AT_ONCE

    explorer = tiny_explorer()
    release, inside, most = threading.Event(), [0], [0]
    lock = threading.Lock()
    real = explorer_module.frame_upload

    def slow_frame(*args):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        release.wait(60)
        with lock:
            inside[0] -= 1
        return real(*args)

    monkeypatch.setattr(explorer_module, "frame_upload", slow_frame)
    real_add = explorer.add_image
    adding = [0, 0]  # now, at most

    def counted_add(data):
        with lock:
            adding[0] += 1
            adding[1] = max(adding[1], adding[0])
        try:
            return real_add(data)
        finally:
            with lock:
                adding[0] -= 1

    monkeypatch.setattr(explorer, "add_image", counted_add)
    answers: list = []

    def upload(k: int) -> None:
        body = png(np.roll(DIGIT, k))
        req = urllib.request.Request(f"{live.url}/api/images", data=body, headers=IMAGE)
        with urllib.request.urlopen(req, timeout=60) as r:
            answers.append(r.status)

    with _LiveServer(explorer) as live:
        threads = [threading.Thread(target=upload, args=(k,)) for k in range(12)]
        for t in threads:
            t.start()
        time.sleep(1.0)  # every upload has arrived; the first are decoding
        assert _get(f"{live.url}/api/edit.png?image=g1&Odd=0.3")[0] == 200
        assert adding[1] <= UPLOADS_AT_ONCE
        release.set()
        for t in threads:
            t.join(60)
    assert answers == [200] * 12 and adding[1] == UPLOADS_AT_ONCE


def test_a_model_call_in_progress_stalls_no_request_for_what_is_held():
    """While a model call holds the explorer's lock, the page and a held upload still answer;
    the edit waiting for the lock answers once it is free."""
    explorer = tiny_explorer()
    with _LiveServer(explorer) as live:
        url = live.url
        req = urllib.request.Request(f"{url}/api/images", data=png(DIGIT), headers=IMAGE)
        upload = urllib.request.urlopen(req, timeout=30).read()
        image_id = __import__("json").loads(upload)["id"]
        waiting: list = []
        with explorer.lock:  # a long model call
            edit = threading.Thread(target=lambda: waiting.append(
                _get(f"{url}/api/edit.json?image={image_id}&Odd=0.7", timeout=60)))  # fmt: skip
            edit.start()
            time.sleep(0.3)  # the edit is now waiting for the lock in a worker thread
            for path in ("/", f"/api/images/{image_id}", f"/api/images/{image_id}.png",
                         "/api/model"):  # fmt: skip
                status, _ = _get(url + path)
                assert status == 200, path
            assert not waiting  # it did wait for the model
        edit.join(60)
        assert waiting and waiting[0][0] == 200


def test_each_port_has_its_own_token_cookie(explorer):
    """Browsers keep cookies by host, not port: two servers on one host would overwrite each
    other's token."""
    policy = Policy.make(token=TOKEN, port=8123)
    client = TestClient(create_app(explorer, policy=policy), base_url="http://127.0.0.1:8123")
    assert (
        client.get(f"/?token={TOKEN}")
        .headers["set-cookie"]
        .startswith(f"glowflow_token_8123={TOKEN};")
    )
    other = TestClient(create_app(explorer, policy=policy), base_url="http://127.0.0.1:8123")
    assert other.get("/", headers={"cookie": f"glowflow_token={TOKEN}"}).status_code == 403
    assert other.get("/", headers={"cookie": f"glowflow_token_8123={TOKEN}"}).status_code == 200


def test_a_bug_is_a_500_of_one_line_of_json_with_the_headers(explorer, monkeypatch):
    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(explorer, "sample", broken)
    client = TestClient(create_app(explorer), base_url=LOCAL, raise_server_exceptions=False)
    r = client.get("/api/sample.png?seed=1")
    assert r.status_code == 500 and r.json() == {
        "error": "the server failed on this request (a bug)"
    }
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" in r.headers
