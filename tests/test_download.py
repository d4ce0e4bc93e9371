"""The downloader against a local HTTP server on 127.0.0.1 (tests never touch the network)."""

from __future__ import annotations

import hashlib
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cnnlab.data import download as dl
from cnnlab.errors import DataError

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class RangeHandler(SimpleHTTPRequestHandler):
    requests: list = []

    def do_GET(self):
        RangeHandler.requests.append(self.headers.get("Range"))
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].rstrip("-"))
            self.send_response(206)
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory="."))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    RangeHandler.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def remote(base, md5=None):
    return dl.Remote(f"{base}/data.bin", md5 or hashlib.md5(PAYLOAD).hexdigest())


def test_download_verifies_md5(server, tmp_path):
    path = dl.download(remote(server), tmp_path)
    assert path.read_bytes() == PAYLOAD and not (tmp_path / "data.bin.part").exists()
    assert dl.download(remote(server), tmp_path) == path  # already there: no request
    assert len(RangeHandler.requests) == 1


def test_download_resumes_partial_file(server, tmp_path):
    (tmp_path / "data.bin.part").write_bytes(PAYLOAD[:300_000])
    path = dl.download(remote(server), tmp_path)
    assert path.read_bytes() == PAYLOAD
    assert RangeHandler.requests == ["bytes=300000-"]


def test_md5_mismatch_removes_the_file(server, tmp_path):
    with pytest.raises(DataError, match="does not match the published"):
        dl.download(remote(server, md5="0" * 32), tmp_path)
    assert not list(tmp_path.iterdir())


def test_unreachable_says_how_to_pass_a_local_copy(tmp_path):
    with pytest.raises(DataError, match=r"cannot download .*pass the local copy's folder as NAME:PATH"):
        dl.download(dl.Remote("http://127.0.0.1:9/nothing.gz", "0" * 32), tmp_path, timeout=5)


def test_unreachable_source_names_itself_in_the_local_copy_it_asks_for(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "home"))
    monkeypatch.setitem(dl.REMOTES, "mnist", [dl.Remote("http://127.0.0.1:9/nothing.gz", "0" * 32)])
    with pytest.raises(DataError, match=r"pass the local copy's folder as mnist:PATH$"):
        dl.fetch("mnist", None)


def test_source_without_path_downloads_into_data_home(server, tmp_path, monkeypatch):
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "home"))
    monkeypatch.setitem(dl.REMOTES, "cifar10", [remote(server)])
    assert dl.fetch("cifar10", None) == tmp_path / "home" / "cifar10" / "data.bin"
    with pytest.raises(DataError, match="no such file or folder \\(or omit it to download cifar10\\)"):
        dl.fetch("cifar10", tmp_path / "typo")
