"""The explorer's HTTP API over the bundled celeba64 model: every endpoint, bad requests
(4xx with a one-line JSON error, never a 5xx), uploads, and a live server under a burst of
malformed requests."""

from __future__ import annotations

import io
import json
import socket
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import torch
from conftest import face_photo, free_port
from conftest import main_in_process as glowflow
from PIL import Image

pytest.importorskip("starlette", reason="the explorer is the glowflow[serve] extra")
from starlette.testclient import TestClient  # noqa: E402

from glowflow.explorer.explorer import Explorer  # noqa: E402
from glowflow.explorer.server import create_app  # noqa: E402
from glowflow.hub.gallery import load_gallery  # noqa: E402
from glowflow.hub.load import load_model  # noqa: E402
from glowflow.hub.pretrained import load_attributes  # noqa: E402

LIMIT = 2**20
PNG = {"content-type": "image/png"}
LOCAL = "http://127.0.0.1:8000"  # the guard answers loopback host names only


@pytest.fixture(scope="module")
def explorer() -> Explorer:
    torch.set_default_dtype(torch.float32)
    loaded = load_model("celeba64")
    model, folder = loaded.model, loaded.pretrained_dir
    gallery = load_gallery(folder)
    torch.set_default_dtype(torch.float64)
    return Explorer(model, load_attributes(folder), gallery, checkpoint="celeba64",
                    gallery_words=["--dataset", gallery.spec], faces=True)  # fmt: skip


@pytest.fixture(scope="module")
def client(explorer) -> TestClient:
    return TestClient(create_app(explorer, max_upload_bytes=LIMIT), base_url=LOCAL)


def decode_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def png_file(array: np.ndarray, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format=fmt)
    return out.getvalue()


def test_the_page_and_its_script_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/explorer.js" in page.text
    assert client.get("/static/explorer.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/explorer.css").status_code == 200


def test_model_and_attributes_describe_the_model(client):
    info = client.get("/api/model").json()
    assert info["image_shape"] == [3, 64, 64] and info["levels"] == 4 and info["n_bits"] == 5
    assert len(info["attributes"]) == 40 and "Smiling" in info["attributes"]
    assert len(info["gallery"]) == 36
    assert info["gallery"][0] == {"id": "g0", "name": "CelebA 004751"}
    assert "non-commercial research" in info["gallery_note"]
    assert info["max_upload_bytes"] == LIMIT
    assert client.get("/api/attributes").json() == {"attributes": info["attributes"]}


def test_a_sample_is_a_png_at_the_models_size_fixed_by_its_seed(client, explorer):
    r = client.get("/api/sample.png?seed=11&temperature=0.7")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    image = decode_png(r.content)
    assert image.shape == (64, 64, 3)
    assert np.array_equal(image, explorer.sample(11, 0.7).image.permute(1, 2, 0).numpy())
    assert not np.array_equal(image, decode_png(client.get("/api/sample.png?seed=12").content))
    record = client.get("/api/sample.json?seed=11&temperature=0.7").json()
    assert record["seed"] == 11 and 0 < record["bpd"] < 8
    assert record["command"].startswith("glowflow sample --checkpoint celeba64 --seeds 11")


def test_an_upload_is_framed_encoded_and_held(client):
    data = face_photo()
    r = client.post("/api/images", content=data, headers={"content-type": "image/jpeg"})
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["width"] == record["height"] == 64 and record["source_size"] == [400, 300]
    assert record["reconstruction_error"] == 0 and 0 < record["bpd"] < 8
    assert record["framing"]["method"] == "face detector"
    again = client.post("/api/images", files={"file": ("me.jpg", data, "image/jpeg")}).json()
    assert again == record  # multipart gives the same, by content hash
    assert client.get(f"/api/images/{record['id']}").json() == record
    crop = decode_png(client.get(f"/api/images/{record['id']}.png").content)
    assert crop.shape == (64, 64, 3)
    edit = client.get(f"/api/edit.png?image={record['id']}&Smiling=1&Young=-0.5")
    assert edit.status_code == 200 and decode_png(edit.content).shape == (64, 64, 3)


def test_an_edit_changes_the_picture_and_zero_gives_the_reconstruction(client, explorer):
    seen = decode_png(client.get("/api/images/g3.png").content)
    zero = decode_png(client.get("/api/edit.png?image=g3").content)
    assert np.abs(zero.astype(int) - (seen // 8 * 8)).max() == 0  # 5 bits: exact
    smile = decode_png(client.get("/api/edit.png?image=g3&Smiling=1.5").content)
    assert np.abs(smile.astype(int) - zero).mean() > 2
    record = client.get("/api/edit.json?image=g3&Smiling=1.5").json()
    assert record["amounts"] == {"Smiling": 1.5} and 0 < record["bpd"] < 8
    assert record["overflow"] is False and record["warning"] is None


def test_the_command_shown_draws_the_same_picture(client, tmp_path):
    record = client.get("/api/edit.json?image=g5&Smiling=0.8").json()
    words = record["command"].split()
    assert words[:2] == ["glowflow", "manipulate"]
    out = tmp_path / "edit.png"
    r = glowflow(*words[1:-2], "--out", out)
    assert r.returncode == 0, r.stderr
    by_command = np.asarray(Image.open(out))[2:66, 2:66]  # the grid's one image
    by_server = decode_png(client.get("/api/edit.png?image=g5&Smiling=0.8").content)
    assert np.abs(by_command.astype(int) - by_server).max() <= 8  # at most one 5-bit level
    assert (by_command != by_server).mean() < 0.001


def test_a_mix_takes_each_level_from_the_image_it_names(client):
    a = decode_png(client.get("/api/edit.png?image=g0").content)
    b = decode_png(client.get("/api/edit.png?image=g1").content)
    assert np.array_equal(decode_png(client.get("/api/mix.png?a=g0&b=g1&levels=aaaa").content), a)
    assert np.array_equal(decode_png(client.get("/api/mix.png?a=g0&b=g1&levels=bbbb").content), b)
    coarse_b = decode_png(client.get("/api/mix.png?a=g0&b=g1&levels=aaab").content)
    assert not np.array_equal(coarse_b, a) and not np.array_equal(coarse_b, b)
    half = client.get("/api/mix.json?a=g0&b=g1&t=0.5&path=spherical").json()
    assert "--spherical" in half["command"] and 0 < half["bpd"] < 8


@pytest.mark.parametrize(
    "path, status, fragment",
    [("/api/edit.png?image=g0&Smiling=nan", 400, "Smiling must lie"),
     ("/api/edit.png?image=g0&Smiling=9", 400, "Smiling must lie in [-2.0, 2.0]"),
     ("/api/edit.png?image=g0&Smiling=lots", 400, "Smiling must be a number"),
     ("/api/edit.png?image=g0&Smilling=1", 400, "unknown attribute 'Smilling'"),
     ("/api/edit.png?Smiling=1", 400, "needs image"),
     ("/api/edit.png?image=0123456789abcdef", 404, "upload the file again"),
     ("/api/edit.png?image=nothing", 400, "an image id is g and a number"),
     ("/api/edit.png?image=g%C2%B2", 400, "an image id is g and a number"),
     ("/api/edit.json?image=g%C2%B2", 400, "an image id is g and a number"),
     ("/api/images/g%C2%B2", 400, "an image id is g and a number"),
     ("/api/mix.png?a=g0&b=g%C2%B2", 400, "an image id is g and a number"),
     ("/api/sample.png?seed=--1", 400, "seed must be a whole number such as 7"),
     ("/api/sample.png?seed=%C2%B2", 400, "seed must be a whole number"),
     ("/api/sample.json?seed=-", 400, "seed must be a whole number"),
     ("/api/sample.png?seed=99999999999999999999", 400, "seed must be a whole number"),
     ("/api/sample.png?seed=1.5", 400, "seed must be a whole number"),
     ("/api/sample.png?seed=1&seed=2", 400, "seed is given 2 times"),
     ("/api/sample.png?temperature=-0.1", 400, "temperature must lie"),
     ("/api/sample.png?label=1", 400, "not class-conditional"),
     ("/api/mix.png?a=g0&b=g1&t=2", 400, "t must lie"),
     ("/api/mix.png?a=g0&b=g1&levels=mm", 400, "levels must be 4 letters"),
     ("/api/mix.png?a=g0&b=g1&path=zigzag", 400, "path must be one of"),
     ("/api/mix.png?a=g0", 400, "needs b"),
     ("/etc/passwd", 404, "no such page"),
     ("/static/../glowflow/explorer/server.py", 404, "no such page"),
     ("/static/%2e%2e/server.py", 404, "no such page"),
     ("/api/images/..%2F..%2Fetc%2Fpasswd", 404, ""),
     ("/api/images/g0%00.png", 400, "an image id is"),
     ("/static/index.html/..", 404, "no such page")],
)  # fmt: skip
def test_bad_requests_get_a_4xx_with_a_one_line_reason(client, path, status, fragment):
    r = client.get(path)
    assert r.status_code == status, r.text
    message = r.json()["error"]
    assert fragment in message and "\n" not in message


@pytest.mark.parametrize(
    "body, content_type, fragment",
    [(b"", "image/png", "no image"),
     (b"%PDF-1.4 not an image", "image/png", "not an image"),
     (png_file(np.zeros((8, 8, 3), np.uint8))[:40], "image/png", "not an image"),
     (b"--x\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nhi\r\n--x--\r\n",
      "multipart/form-data; boundary=x", "field 'file'"),
     (b"--x\r\ngarbage", "multipart/form-data; boundary=x", "")],
)  # fmt: skip
def test_bad_uploads_get_a_400(client, body, content_type, fragment):
    r = client.post("/api/images", content=body, headers={"content-type": content_type})
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]


def test_any_size_and_mode_is_converted(client):
    gray = np.linspace(0, 255, 30 * 500, dtype=np.uint8).reshape(30, 500)
    r = client.post("/api/images", content=png_file(gray), headers=PNG)
    assert r.status_code == 200
    assert r.json()["framing"]["method"] == "centre crop" and r.json()["source_size"] == [500, 30]
    rgba = np.full((5, 7, 4), 200, np.uint8)
    assert client.post("/api/images", content=png_file(rgba), headers=PNG).status_code == 200


def test_too_large_an_upload_gets_a_413(client):
    r = client.post("/api/images", content=b"\x89PNG" + b"0" * LIMIT, headers=PNG)
    assert r.status_code == 413 and "over 1 MiB" in r.json()["error"]


def test_the_wrong_method_gets_a_405(client):
    assert client.get("/api/images").status_code == 405
    assert client.delete("/api/images/g0").status_code == 405


# ----------------------------------------------------------------------------- a live server
def _raw(url: str, request: bytes, read: bool = True) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(request)
        if not read:
            return b""
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_a_live_server_answers_a_413_to_a_large_upload_and_keeps_going(live_server):
    body = b"\xff\xd8" + b"\0" * (11 * 2**20)  # over the default 10 MiB
    req = urllib.request.Request(
        f"{live_server}/api/images",
        data=body,
        method="POST",
        headers={"content-type": "image/jpeg"},
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 413
    assert "over 10 MiB" in json.loads(e.value.read())["error"]


def test_a_burst_of_bad_requests_leaves_the_server_answering(live_server):
    bad = [
        b"GARBAGE\r\n\r\n",
        b"GET /api/edit.png?image=g0&Smiling=%ZZ HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /api/images HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort",
        b"POST /api/images HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST /api/images HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /api/images/%00%ff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ]
    paths = ["/api/sample.png?seed=-3", "/api/mix.png?a=g0&b=g1&t=inf", "/api/edit.png?image=",
             "/api/edit.png?image=g0&Smiling=1e308", "/api/images/g9999999999.png"]  # fmt: skip
    started = time.monotonic()
    for _ in range(5):
        for request in bad:
            try:
                _raw(live_server, request, read=request.endswith(b"close\r\n\r\n"))
            except OSError:
                pass  # the server may close a malformed connection: that is its right
        for path in paths:
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(live_server + path, timeout=10)
            assert 400 <= e.value.code < 500, (path, e.value.code)
    assert time.monotonic() - started < 120
    with urllib.request.urlopen(f"{live_server}/api/edit.png?image=g0&Smiling=0.5") as r:
        assert r.status == 200 and decode_png(r.read()).shape == (64, 64, 3)


# ----------------------------------------------------------------------------- the command
def test_serve_with_no_options_serves_celeba64_on_loopback(monkeypatch, capsys):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
    r = glowflow("serve", "--port", "0")
    assert r.returncode == 2 and "--port must lie in 1..65535" in r.stderr
    port = free_port()
    r = glowflow("serve", "--port", port)
    assert r.returncode == 0, r.stderr
    ((app, kw),) = calls
    assert kw["host"] == "127.0.0.1" and kw["port"] == port
    assert f"http://127.0.0.1:{port}/" in r.stderr and "warning" not in r.stderr
    info = TestClient(app, base_url=LOCAL).get("/api/model").json()
    assert info["checkpoint"] == "celeba64" and len(info["gallery"]) == 36


def test_serve_warns_when_listening_beyond_this_computer(monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    monkeypatch.setattr("glowflow.cli.serve._check_port", lambda host, port: None)
    r = glowflow("serve", "--host", "0.0.0.0", "--port", "8123", "--checkpoint", "mnist")
    assert r.returncode == 0, r.stderr
    assert "warning: listening on 0.0.0.0" in r.stderr


def test_serve_refuses_a_port_in_use_in_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        r = glowflow("serve", "--port", s.getsockname()[1])
    assert r.returncode == 2 and "choose another --port" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_serve_computes_class_directions_from_a_labelled_data_set(monkeypatch, tmp_path):
    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append(app))
    r = glowflow("serve", "--checkpoint", "mnist", "--dataset", "mnist-mini", "--limit", "300",
                 "--gallery-size", "4", "--port", free_port())  # fmt: skip
    assert r.returncode == 0, r.stderr
    client = TestClient(calls[0], base_url=LOCAL)
    info = client.get("/api/model").json()
    assert info["attributes"] == [f"class:{k}" for k in range(10)]
    assert [g["id"] for g in info["gallery"]] == ["g0", "g1", "g2", "g3"]
    assert info["face_detector"] is False  # digits are centre-cropped, not face-framed
    record = client.get("/api/edit.json?image=g1&class:7=1").json()
    words = record["command"].split()
    assert words[words.index("--max-images") + 1] == "300"
    out = tmp_path / "seven.png"
    assert glowflow(*words[1:-2], "--out", out).returncode == 0
    by_server = decode_png(client.get("/api/edit.png?image=g1&class:7=1").content)
    h, w = by_server.shape[:2]  # the grid's one image, inside its 2-pixel frame
    by_command = np.asarray(Image.open(out))[2 : 2 + h, 2 : 2 + w, 0]
    assert (by_command != by_server).mean() < 0.002
