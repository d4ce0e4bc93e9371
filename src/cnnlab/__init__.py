"""cnnlab: train, evaluate and compare classic CNN image classifiers.

    from cnnlab import train, evaluate, predict, load_run, load_model, create_model, list_models, load_dataset, lr_find
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import CnnlabError

__version__ = "0.1.0"
__all__ = ["CnnlabError", "Dataset", "Run", "TrainConfig", "create_model", "evaluate", "list_models",
           "load_dataset", "load_model", "load_run", "lr_find", "predict", "resume", "train"]

if TYPE_CHECKING:
    from .api import (
        Dataset,
        Run,
        TrainConfig,
        create_model,
        evaluate,
        list_models,
        load_dataset,
        load_model,
        load_run,
        lr_find,
        predict,
        resume,
        train,
    )


def __getattr__(name: str):
    # torch is imported on first use, so the CLI can choose its allocator before it loads
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'cnnlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    # what tab completion lists: the API, which __getattr__ loads on first use
    return sorted({*__all__, "__version__"})
