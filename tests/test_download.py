"""The downloader against a local HTTP server on 127.0.0.1 (tests never touch the network)."""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from cnnlab.data import download as dl
from cnnlab.errors import DataError
from conftest import make_image_folder, run_cli

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


def test_a_data_url_is_downloaded_once_and_read_as_its_local_copy(file_server, tmp_path, monkeypatch):
    """The tutorials start from a URL (Keras' get_file(origin=..., untar=True) of
    flower_photos.tgz): `--data folder:URL` downloads it once into the data home, and the run
    records the local copy, which evaluate and resume then read."""
    served, base = file_server
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "home"))
    photos = make_image_folder(tmp_path / "flower_photos", classes=2, per_class=4)
    with tarfile.open(served / "flower_photos.tgz", "w:gz") as tar:
        tar.add(photos, arcname="flower_photos")
    url = f"{base}/flower_photos.tgz?raw=1"
    run_cli("train", "--model", "mlp", "--data", f"folder:{url}", "--image-size", "12x12", "--epochs", "1",
            "--out", tmp_path / "runs", "--name", "r")
    recorded = yaml.safe_load((tmp_path / "runs" / "r" / "config.yaml").read_text())["data"]["spec"]
    assert recorded.startswith(f"folder:{tmp_path / 'home' / 'urls'}") and recorded.endswith("/flower_photos.tgz")
    (served / "flower_photos.tgz").unlink()  # read from the local copy from now on
    info = json.loads(run_cli("data", "info", f"folder:{url}", "--format", "json").stdout)
    assert info["classes"] == ["class_0", "class_1"]
    missing = run_cli("data", "info", f"folder:{base}/nothing.zip", check=False)
    assert missing.returncode == 2 and re.search(
        r"cannot download http://127\.0\.0\.1:\d+/nothing\.zip \(.*404.*\); download it on a machine with access "
        r"and pass the local copy as folder:PATH$", missing.stderr.strip()), missing.stderr


class SharingPageHandler(SimpleHTTPRequestHandler):
    """What a file-sharing link often answers: a web page, not the file."""

    def do_GET(self):
        body = b"<html><body>Sign in to download photos.zip</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_url_that_answers_with_a_web_page_is_one_line_naming_it(tmp_path, monkeypatch):
    """A sharing link (Google Drive, Dropbox) answers with a page: it was saved as photos.zip and
    the extraction then said 'not a tar or zip archive'."""
    monkeypatch.setenv("CNNLAB_DATA", str(tmp_path / "home"))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), SharingPageHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/photos.zip"
        with pytest.raises(DataError, match=r"photos.zip: the server sent a web page \(text/html\), not the file"):
            dl.fetch_url(dl.Remote(url), "the local copy as folder:PATH")
        assert not list((tmp_path / "home").rglob("*.zip*"))
    finally:
        httpd.shutdown()


def test_a_download_larger_than_the_free_disk_is_refused_before_it_starts(server, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DataError, match=r"data.bin: 1.0 MiB to download; .* has 1.0 KiB free"):
        dl.download(remote(server), tmp_path)
    assert not list(tmp_path.iterdir())
