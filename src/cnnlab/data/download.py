"""Downloads of the published data sets: resumable, checked against the published md5, and
never needed: every source also reads a local copy (``NAME:PATH``)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import DataError
from .cache import readable_size


@dataclass(frozen=True)
class Remote:
    url: str
    md5: str | None = None
    """None for a URL a user gives: its length is checked, as the server states it."""

    @property
    def filename(self) -> str:
        return Path(urllib.parse.urlparse(self.url).path).name or "download"


_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"
_FASHION = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_GTSRB = "https://sid.erda.dk/public/archives/daaeac0d7ce1152aea9b61d9f1e19370/"
REMOTES: dict[str, list[Remote]] = {
    "mnist": [Remote(_MNIST + "train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
              Remote(_MNIST + "train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
              Remote(_MNIST + "t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
              Remote(_MNIST + "t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c")],
    "fashion-mnist": [
        Remote(_FASHION + "train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d"),
        Remote(_FASHION + "train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe"),
        Remote(_FASHION + "t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79"),
        Remote(_FASHION + "t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310")],
    "cifar10": [Remote("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                       "c58f30108f718f92721af3b95e74349a")],
    "cifar100": [Remote("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                        "eb9058c3a382ffc7106e4002c42a8d85")],
    "gtsrb": [Remote(_GTSRB + "GTSRB-Training_fixed.zip", "513f3c79a4c5141765e10e952eaa2478"),
              Remote(_GTSRB + "GTSRB_Final_Test_Images.zip", "c7e4e6327067d32654124b0fe9e82185"),
              Remote(_GTSRB + "GTSRB_Final_Test_GT.zip", "fe31e9c9270bbcd7b84b7f21a9d9d9e5")],
    "caltech256": [Remote("http://www.vision.caltech.edu/Image_Datasets/Caltech256/256_ObjectCategories.tar",
                          "67b4f42ca05d46448c6bb8ecd2220f6d")],
}
ARCHIVES = {"gtsrb", "caltech256"}
"""Sources whose downloads are archives to extract (CIFAR's tarballs are read in place)."""


def data_home() -> Path:
    return Path(os.environ.get("CNNLAB_DATA") or Path.home() / ".cache" / "cnnlab" / "datasets")


def data_home_usage(leave_out: str) -> list[tuple[str, int]]:
    """Each folder of the data home (the published sets' downloads, ``urls``, ``arrays``) and
    the bytes under it, but ``leave_out``."""
    home = data_home()
    folders = sorted(p for p in home.iterdir() if p.is_dir() and p.name != leave_out) if home.is_dir() else []
    return [(folder.name, folder_size(folder)) for folder in folders]


def folder_size(folder: Path) -> int:
    """The disk the files under ``folder`` take, which removing them frees (``du``'s figure):
    an extracted data set of small images takes a block of 4 KB each, 15 times MNIST's
    PNGs' bytes. Bytes where the system gives no blocks."""
    stats = [f.stat() for f in folder.rglob("*") if f.is_file()]
    return sum(stat.st_blocks * 512 if hasattr(stat, "st_blocks") else stat.st_size for stat in stats)


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(remote: Remote, folder: Path, timeout: float = 30.0,
             instead: str = "the local copy's folder as NAME:PATH") -> Path:
    """Fetch ``remote`` into ``folder``: resumes a partial ``.part`` file with an HTTP range
    request, verifies the md5, then renames it into place. Processes fetching the same file
    (the ranks of a distributed run, two commands at once) take turns on a lock of the folder, so
    one downloads and the others find the finished file. An error says to pass ``instead``."""
    target = folder / remote.filename
    if target.is_file() and (remote.md5 is None or md5_of(target) == remote.md5):
        return target
    folder.mkdir(parents=True, exist_ok=True)
    lock = os.open(folder, os.O_RDONLY)  # the folder itself is the lock: no file is left behind
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file() and (remote.md5 is None or md5_of(target) == remote.md5):
            return target
        return _fetch_locked(remote, target, timeout, instead)
    finally:
        os.close(lock)


def fetch_url(remote: Remote, instead: str) -> Path:
    """The local copy of a URL given as data or weights (``folder:https://.../flower_photos.tgz``,
    as the tutorials start from Keras' get_file): downloaded once into the data home, in a
    folder named by the URL. An error says to pass ``instead``."""
    folder = data_home() / "urls" / hashlib.sha256(remote.url.encode()).hexdigest()[:16]
    return download(remote, folder, instead=instead)


def _fetch_locked(remote: Remote, target: Path, timeout: float, instead: str) -> Path:
    partial = target.with_name(target.name + ".part")
    have = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(remote.url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = have and response.status == 206
            total = int(response.headers.get("Content-Length", 0)) + (have if resumed else 0)
            kind = response.headers.get("Content-Type", "").split(";")[0].strip()
            if remote.md5 is None and kind == "text/html" and not remote.filename.lower().endswith((".html", ".htm")):
                raise DataError(f"{remote.url}: the server sent a web page ({kind}), not the file (a sharing or "
                                f"sign-in page?); download the file itself and pass {instead}")
            free = shutil.disk_usage(target.parent).free
            if total - (have if resumed else 0) > free:
                raise DataError(f"{remote.url}: {readable_size(total)} to download; {target.parent} has "
                                f"{readable_size(free)} free")
            with partial.open("ab" if resumed else "wb") as handle, tqdm(
                    total=total or None, initial=have if resumed else 0, unit="B", unit_scale=True,
                    desc=remote.filename, leave=False) as bar:
                for block in iter(lambda: response.read(1 << 16), b""):
                    handle.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = f"HTTP {exc.code}: {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", exc)
        raise DataError(f"cannot download {remote.url} ({reason}); download it on a machine with "
                        f"access and pass {instead}") from None
    if remote.md5 is None:
        if total and partial.stat().st_size != total:
            raise DataError(f"{remote.url}: the download stopped after {partial.stat().st_size:,} of {total:,} bytes; "
                            "run the command again to resume it")
    elif (found := md5_of(partial)) != remote.md5:
        partial.unlink()
        raise DataError(f"{remote.url}: md5 {found} does not match the published {remote.md5}; "
                        "the download was removed, try again")
    os.replace(partial, target)
    return target


def fetch(name: str, path: Path | None) -> Path:
    """The local copy of source ``name``: ``path`` itself, or, when no path is given, the
    official files downloaded once into the data home ($CNNLAB_DATA)."""
    if path is not None:
        if not path.exists():
            hint = f" (or omit it to download {name})" if name in REMOTES else ""
            raise DataError.about("data", f" {name}:{path}: no such file or folder{hint}")
        return path
    if name not in REMOTES:
        raise DataError.about("data", f" {name}: give the local copy as {name}:PATH "
                              f"({name} is not downloaded automatically)")
    folder = data_home() / name
    files = [download(remote, folder, instead=f"the local copy's folder as {name}:PATH") for remote in REMOTES[name]]
    if name in ARCHIVES:
        from .safe import extract_archive

        for file in files:
            extract_archive(file, folder / "extracted" / file.name.split(".")[0])
        return folder / "extracted"
    return folder if len(files) > 1 else files[0]
