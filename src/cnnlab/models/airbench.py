"""airbench: the network of Keller Jordan's "94% on CIFAR-10 in 3.29 Seconds on a Single GPU"
(arXiv:2404.00498, 2024), the fastest-training CIFAR-10 net of its accuracy.

A fixed patch-whitening layer (2x2 patches, fitted to the training images before the first
step), then three blocks of two 3x3 convolutions (the first followed by a 2x2 max-pool) with
BatchNorm and ReLU, global max pooling and one dense layer. Nearly all of its work happens on
16x16 and smaller maps, which is why it learns more per FLOP than ResNet-9. ``widths`` are the
three blocks' channels: the paper's airbench94 is [64, 256, 256]; on a 2-core CPU
[32, 128, 128] costs about what ResNet-9 at width 16 does (docs/results.md). ``whiten=False``
trains the first layer instead (for measuring what whitening brings).

Two of the paper's choices are options: ``bn_scale=False`` keeps BatchNorm's scale at 1
(only its shift trains) and ``identity_init=True`` starts each convolution's first filters as
the identity (an implicit residual). Other differences from the paper's code: ReLU instead of
GELU, PyTorch's BatchNorm defaults, no fixed 1/9 scale on the logits. Its training methods
are not part of the network: alternating flips (``hflip:alternate``), its later Muon variant
(``optimizer.muon_renormalise``) and the whitening bias's warm-up
(``model.whiten_bias_epochs``) are training options; lookahead is not in cnnlab.
"""

from __future__ import annotations

from torch import nn

from ..errors import CnnlabError
from .convnet import ConvNet
from .factory import register_model
from .layers import TORCH_BN, Conv, GlobalPool, MaxPool, PatchMatmulConv2d, ReLU, Whiten, fix_weight

AIRBENCH94_WIDTHS = (64, 256, 256)


def block(filters: int) -> list:
    """conv 3x3, max-pool 2, BatchNorm, ReLU, conv 3x3, BatchNorm, ReLU."""
    return [Conv(filters, 3, padding=1, bias=False), MaxPool(2), TORCH_BN, ReLU(),
            Conv(filters, 3, padding=1, bias=False), TORCH_BN, ReLU()]


def airbench_features(widths, in_channels: int, whiten: bool) -> list:
    # without whitening, a trained 2x2 convolution of the same shape (the ablation)
    stem = Whiten(2) if whiten else Conv(2 * in_channels * 2 * 2, 2)
    return [stem, ReLU(), *(row for filters in widths for row in block(filters)), GlobalPool("max")]


@register_model("airbench", input_size=(32, 32, 3), num_classes=10, params=1_975_106,
                source="Jordan, 94% on CIFAR-10 in 3.29 Seconds on a Single GPU (arXiv:2404.00498, 2024)")
def airbench(num_classes, in_channels, input_size, widths=AIRBENCH94_WIDTHS, whiten: bool = True,
             bn_scale: bool = True, identity_init: bool = False):
    """Whitening layer, 3 blocks of two 3x3 convs (pool after the first), global max pool, dense."""
    widths = tuple(widths)
    if len(widths) != 3 or not all(isinstance(w, int) and w > 0 for w in widths):
        raise CnnlabError(f"airbench: widths must be three positive channel counts; got {list(widths)}")
    net = ConvNet(airbench_features(widths, in_channels, whiten), [], num_classes, in_channels, input_size, name="airbench")
    for module in net.features.modules():
        if isinstance(module, nn.BatchNorm2d) and not bn_scale:
            fix_weight(module)
        elif identity_init and isinstance(module, PatchMatmulConv2d) and module.kernel_size == (3, 3):
            nn.init.dirac_(module.weight.data[:module.in_channels])
    return net
