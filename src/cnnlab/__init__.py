"""cnnlab: train, evaluate and compare classic CNN image classifiers."""

from .api import (
                  Dataset,
                  Run,
                  TrainConfig,
                  create_model,
                  evaluate,
                  load_dataset,
                  load_run,
                  predict,
                  resume,
                  train,
)
from .errors import CnnlabError

__version__ = "0.1.0"
__all__ = ["CnnlabError", "Dataset", "Run", "TrainConfig", "create_model", "evaluate",
           "load_dataset", "load_run", "predict", "resume", "train"]
