"""The model zoo. Importing this package registers every model."""

from . import airbench, alexnet, lenet, resnet, tutorial_cnns, vgg  # noqa: F401  (registers the models)
from .convnet import ConvNet
from .factory import MODELS, ModelInfo, create_model, list_models, place_model, register_model
from .summary import ParamCount, count_params, summarize

__all__ = ["MODELS", "ConvNet", "ModelInfo", "ParamCount", "count_params", "create_model", "list_models",
           "place_model", "register_model", "summarize"]
