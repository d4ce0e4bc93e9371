"""One reader per published format; importing this package registers them all as data
sources. A reader takes the path the user gave (None: download, where the source can) and the
source's options, and returns the raw splits (sources.py)."""

from . import arrays, caltech, cifar, digits, folder, gtsrb, hub, idx  # noqa: F401  (registers the sources)
