"""The vocabulary of the layer tables in the model files: each entry reads like a row of
a layer table ("conv 96@11x11 stride 4 valid", docs/models.md) and builds its PyTorch module."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


class LocalResponseNorm(nn.Module):
    """Cross-channel LRN exactly as the AlexNet paper writes it:
    b[i] = a[i] / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} a[j]^2) ** beta.

    torch's F.local_response_norm averages the squares over the window (it divides alpha by n),
    so alpha is scaled by n here to get the paper's sum.
    """

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
        super().__init__()
        if size % 2 != 1:
            raise ValueError("LRN window size must be odd so it is centred on each channel")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not traced() and x.device.type == "cpu":
            return ChannelWindowLRN.apply(x, self.size, self.alpha, self.beta, self.k)
        return self.torch_lrn(x)

    def torch_lrn(self, x: torch.Tensor) -> torch.Tensor:
        """torch's own LRN (tracing, ONNX's LRN operator, other devices)."""
        return F.local_response_norm(x, self.size, self.alpha * self.size, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"


def channel_window_sum(x: torch.Tensor, size: int) -> torch.Tensor:
    """sum_{j=i-size//2}^{i+size//2} x[:, j] for every channel i, zero beyond the edges: the
    input plus its shifted slices, whatever the layout."""
    out = x.clone()
    for shift in range(1, size // 2 + 1):
        out[:, shift:] += x[:, :-shift]
        out[:, :-shift] += x[:, shift:]
    return out


def widened(x: torch.Tensor) -> torch.Tensor:
    """``x`` in fp32 where it is in a 16-bit float type, else ``x`` itself."""
    return x.float() if x.dtype in (torch.bfloat16, torch.float16) else x


class ChannelWindowLRN(torch.autograd.Function):
    """The paper's LRN with its gradient written out, for CPUs: torch's F.local_response_norm
    builds the window sum from a 3-D average pool over a padded copy and lets autograd
    differentiate every step, which took 404 ms forward and backward on AlexNet's first LRN
    (96x55x55, batch 64, fp32) and about 35% of its training step; this takes 89-92 ms
    (docs/benchmarks.md). With d = k + alpha * W(x^2) and W the window sum over channels,
    y = x * d^-beta and dL/dx = g * d^-beta - 2 * alpha * beta * x * W(g * y / d), W being
    symmetric. Lower precisions compute in fp32, as autocast runs torch's LRN."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, size: int, alpha: float, beta: float, k: float) -> torch.Tensor:
        wide = widened(x)
        d = channel_window_sum(wide * wide, size).mul_(alpha).add_(k)
        scale = d.pow(-beta)
        ctx.save_for_backward(x, d, scale)
        ctx.constants = size, alpha, beta
        return (wide * scale).to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, d, scale = ctx.saved_tensors
        size, alpha, beta = ctx.constants
        wide, grad = widened(x), widened(grad)
        spread = channel_window_sum((grad * wide).mul_(scale).div_(d), size)
        grad_x = spread.mul_(wide).mul_(-2 * alpha * beta).addcmul_(grad, scale)
        return grad_x.to(x.dtype), None, None, None, None


class UniformMaskDropout(nn.Dropout):
    """nn.Dropout (zero each value with probability p, scale the rest by 1/(1-p)) with its mask
    drawn from 8 random bits per value, eight values from each 64-bit draw, where p is a
    multiple of 1/256 (the tutorials' 0.5 and 0.25 are), else from 16 bits (p applied to
    1/65536); ``mask_bits`` fixes either. On CPU, F.dropout's bernoulli_ was 8% of the
    alexnet-bn step; comparing one uniform float per value to p made the layer 2x faster, 16
    bits halved the mask's time again, and 8 bits made the whole step 1.01-1.02x faster still
    (docs/benchmarks.md). CUDA keeps torch's fused kernel."""

    def __init__(self, p: float = 0.5, inplace: bool = False, mask_bits: int | None = None):
        super().__init__(p, inplace)
        if mask_bits not in (None, 8, 16):
            raise ValueError(f"mask_bits is 8 or 16, not {mask_bits!r}")
        self.mask_bits = mask_bits or (8 if float(p * 256).is_integer() else 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.is_cuda or self.p == 1:
            return F.dropout(x, self.p, self.training, self.inplace)
        # a value is kept when its bits, read as a signed number, reach the threshold
        levels = 2**self.mask_bits
        threshold = round(self.p * levels) - levels // 2
        keep = (random_integers_like(x, self.mask_bits) >= threshold).to(x.dtype).mul_(1 / (1 - self.p))
        return x.mul_(keep) if self.inplace else x * keep


def random_integers_like(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Independent uniform signed integers of 8 or 16 bits, one per element of ``x`` and laid
    out like it (channels_last stays channels_last, so the product with x runs over contiguous
    memory)."""
    dtype = {8: torch.int8, 16: torch.int16}[bits]
    count, per_word = x.numel(), 64 // bits
    words = torch.randint(-2**63, 2**63 - 1, ((count + per_word - 1) // per_word,), dtype=torch.int64,
                          device=x.device)
    flat = words.view(dtype)[:count]
    if channels_last_only(x):
        n, c, h, w = x.shape
        return flat.view(n, h, w, c).permute(0, 3, 1, 2)
    return flat.view(x.shape)


def training_on_cpu(x: torch.Tensor) -> bool:
    """Whether ``x`` is on a CPU with its gradient to come, outside tracing: where the layers
    with a gradient of their own (measured on CPUs only) take it."""
    return not traced() and x.device.type == "cpu" and torch.is_grad_enabled() and x.requires_grad


def channels_last_only(x: torch.Tensor) -> bool:
    """Whether ``x`` is a batch of maps laid out channels_last and not also plain contiguous
    (a 1x1 map is both)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


class LayoutKeepingFlatten(nn.Flatten):
    """nn.Flatten whose gradient, on a CPU, comes back in its input's layout. Flattening a
    channels_last map in PyTorch's (channels, height, width) order copies it, and torch hands the
    gradient back in that order: every backward step before the flatten (ReLU's, dropout's,
    pooling's) then meets an NCHW gradient and its own channels_last saved tensors, a mix that
    runs at a fraction of its speed (small-cnn's ReLU backward on its last 128x24x24 map took
    4.6 ms, as long as the one on its first 16x222x222 map with ten times the values). Copying
    the gradient back to channels_last made small-cnn's training step 1.03-1.06x faster in fp32
    and 1.05-1.08x in bf16 (docs/benchmarks.md); the AlexNets' and simple-cnn's small last maps
    gained nothing measurable. Tracing (ONNX export) and other devices take nn.Flatten's path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.start_dim, self.end_dim) == (1, -1) and training_on_cpu(x) and channels_last_only(x):
            return FlattenChannelsLast.apply(x)
        return super().forward(x)


class FlattenChannelsLast(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return x.flatten(1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.reshape(ctx.shape).contiguous(memory_format=torch.channels_last)


class TilingAvgPool2d(nn.AvgPool2d):
    """nn.AvgPool2d whose backward, where the windows tile a channels_last map on a CPU (window
    and stride equal, no padding, sides divisible by the window), is the gradient spread over
    each window by nearest-neighbour upsampling: the same values, since every input falls in
    exactly one window with weight 1/k^2. torch's avg_pool2d_backward fills the whole input
    gradient with zeros and then adds each window into it; on small-cnn's first 16x222x222 map
    at batch 32 it took 7.0-10 ms in fp32 and 7.5 ms in bf16, the upsampling 3.9-5.0 and 2.5
    (docs/benchmarks.md). Other cases, tracing (ONNX export) and inference take nn.AvgPool2d's
    path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if training_on_cpu(x):
            window = self.tiling_window(x)
            if window:
                return AvgPoolTiles.apply(x, window)
        return super().forward(x)

    def tiling_window(self, x: torch.Tensor) -> int | None:
        """The window's side where it tiles ``x`` exactly, else None."""
        size, stride, padding = (v if isinstance(v, tuple) else (v, v)
                                 for v in (self.kernel_size, self.stride, self.padding))
        if (size[0] != size[1] or size != stride or padding != (0, 0) or self.divisor_override is not None
                or not channels_last_only(x)):
            return None
        window = size[0]
        return window if x.shape[-2] % window == 0 and x.shape[-1] % window == 0 else None


class AvgPoolTiles(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, window: int) -> torch.Tensor:
        ctx.window = window
        return F.avg_pool2d(x, window)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        spread = F.interpolate(grad.contiguous(memory_format=torch.channels_last) / ctx.window**2,
                               scale_factor=ctx.window, mode="nearest")
        return spread, None


class OneDnnLinear(nn.Linear):
    """nn.Linear whose fp32 product on a CPU runs through oneDNN's matmul (the primitive torch's
    own compiler uses) instead of torch's BLAS, MKL, which takes a generic path on the AMD EPYCs
    cnnlab is measured on: there the large dense layers ran forward and backward 1.8-2.5x faster,
    fp32 throughout, and the whole training step of alexnet-mnist 1.16-1.21x, alexnet-bn 1.10x
    (docs/benchmarks.md). Autocast (bf16, fp16), other devices, CPUs other than x86 with AVX,
    inputs of more than two dimensions, layers of under ONEDNN_DENSE_MIN_WEIGHTS weights and
    tracing (ONNX export) take nn.Linear's own path."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dense(x, self.weight, self.bias)


class LogitsLinear(OneDnnLinear):
    """The output layer: its logits in fp32 under autocast too, from the layer before's bf16
    (or fp16) features. In bf16 a logit keeps 8 significant bits, so two classes' probabilities
    came out equal: of 1,360 flower photos a resnet9 run scored in bf16, 14 had their two most
    likely classes at the same probability (the top one then decided by the classes' order),
    none with this layer in fp32, which costs nothing measurable (docs/benchmarks.md)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fp32_dense(x, self.weight, self.bias)


def fp32_dense(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``dense`` computed in fp32, under autocast too."""
    device = x.device.type
    if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):  # not on "meta"
        with torch.autocast(device, enabled=False):
            return dense(x.float(), weight, bias)
    return dense(x, weight, bias)


def dense(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """F.linear, through oneDNN's matmul where OneDnnLinear says."""
    if onednn_dense_applies(x, weight):
        return OneDnnDense.apply(x, weight, bias)
    return F.linear(x, weight, bias)


ONEDNN_DENSE_MIN_WEIGHTS = 1 << 16
"""Below this, oneDNN's per-call cost eats the gain (measured before this threshold existed):
LeNet-5's 120->84 and 84->10 and small-cnn's 128->17 ran 0.55-0.78x; its 400->120 alone ran
1.56x but LeNet-5's whole step gained nothing measurable (0.94x, within its 5% noise); the
784->512 and 512->512 of the MLP ran 1.9-2.0x and its whole step 1.4-1.6x."""


def onednn_dense_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether an fp32 product of ``x`` (a batch of rows) with ``weight`` on a CPU takes oneDNN's
    matmul."""
    return (not traced() and x.dim() == 2 and x.dtype == weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu") and worth_onednn(x, weight))


def worth_onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a product with ``weight`` on this device and CPU is one oneDNN runs faster (asked
    after traced(): it reads the weight's size)."""
    return (x.device.type == "cpu" and weight.numel() >= ONEDNN_DENSE_MIN_WEIGHTS
            and onednn_matmul_available() and torch.backends.mkldnn.enabled)


@functools.cache
def onednn_matmul_available() -> bool:
    """Whether this CPU is of the kind oneDNN's matmul was measured faster on (x86 with AVX2 or
    AVX-512; on others, ARM where torch may build oneDNN on other kernels, torch keeps its path)
    and this torch has the matmul: ``mkldnn._linear_pointwise`` is an operator of torch's
    compiler, not a public API, so a torch that drops or lacks it keeps torch's own path."""
    return (torch.backends.cpu.get_cpu_capability().startswith("AVX") and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def traced() -> bool:
    """Under tracing (ONNX export) or torch.compile, where layers take torch's own path; asked
    first, before any shape is read, since a traced shape is a tensor."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def onednn_matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight.T + bias in oneDNN, which takes transposed views as they are."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class OneDnnDense(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return onednn_matmul(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        needs_x, needs_weight, needs_bias = ctx.needs_input_grad
        return (onednn_matmul(grad, weight.t(), None) if needs_x else None,
                onednn_matmul(grad.t(), x.t(), None) if needs_weight else None,
                grad.sum(0) if needs_bias else None)


class PatchMatmulConv2d(nn.Conv2d):
    """nn.Conv2d that, on a CPU in fp32 or bf16 autocast, computes an output of at most
    PATCH_MATMUL_MAX_POSITIONS positions as one oneDNN matmul over its input patches (fp32 as
    OneDnnLinear does; in bf16 torch sends the product to oneDNN itself). oneDNN's convolution
    runs such maps at a fraction of its speed: simple-cnn's 3x3 convolution from 512 to 1024
    channels on a 4x4 map (2x2 out) ran forward and backward at 112-134 GFLOP/s in fp32, the
    matmul at 396-408, 3x faster (1.8x with oneDNN held to AVX2; 2.9x in bf16). In a bf16 step
    its input comes in bf16 from the layer before; on a Xeon with AMX that layer ran 7.1x faster
    as the matmul, and simple-cnn's whole bf16 step 1.74x. From 3x3 outputs on the convolution is
    the faster one (0.5-0.85x for the matmul), so it keeps them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.patch_matmul_applies(x):
            return patch_matmul(x, self.weight, self.bias, self.stride, self.padding)
        return super().forward(x)

    def patch_matmul_applies(self, x: torch.Tensor) -> bool:
        if traced() or x.dim() != 4 or self.groups != 1 or self.dilation != (1, 1) or self.padding_mode != "zeros":
            return False
        height, width = (
            (size + 2 * pad - kernel) // stride + 1
            for size, pad, kernel, stride in zip(x.shape[2:], self.padding, self.kernel_size, self.stride, strict=True))
        return (height * width <= PATCH_MATMUL_MAX_POSITIONS and in_cpu_step_precision(x, self.weight)
                and worth_onednn(x, self.weight))


def in_cpu_step_precision(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``x`` and ``weight`` come as a CPU step in fp32 or under bf16 autocast has them:
    fp32 weights, and an fp32 input or, under bf16 autocast, a bf16 one (the layer before a
    convolution answers in bf16 there)."""
    autocast = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None
    return (weight.dtype == torch.float32 and autocast in (None, torch.bfloat16)
            and x.dtype in (torch.float32, autocast))


PATCH_MATMUL_MAX_POSITIONS = 4


class ConvReLUSequential(nn.Sequential):
    """nn.Sequential that, on a CPU, runs each convolution and the ReLU after it as one oneDNN
    convolution with a ReLU post-op (as torch's compiler fuses them): the ReLU's own pass over
    the map goes, read and written once more in memory. On a Xeon with AMX in bf16 that pass was
    14% of small-cnn's training step and 9% of vgg16's; fused, their steps ran 1.14x and 1.07x
    (0.99-1.05x in fp32; docs/benchmarks.md). The modules stay as they are (rows, state dict,
    hooks): a pair with a hook on either module, tracing (ONNX export) and other devices take
    the modules one by one."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        modules = list(self)
        index = 0
        while index < len(modules):
            module = modules[index]
            after = modules[index + 1] if index + 1 < len(modules) else None
            if isinstance(after, nn.ReLU) and conv_relu_applies(module, after, x):
                x = conv_relu(module, x)
                index += 2
            else:
                x = module(x)
                index += 1
        return x


def conv_relu_applies(conv: nn.Module, relu: nn.ReLU, x: torch.Tensor) -> bool:
    if traced() or type(conv) not in (nn.Conv2d, PatchMatmulConv2d) or x.device.type != "cpu" or x.dim() != 4:
        return False
    hooked = any(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                 or module._backward_pre_hooks for module in (conv, relu))
    return (not hooked and not nn.modules.module._global_forward_hooks
            and not nn.modules.module._global_forward_pre_hooks and conv.padding_mode == "zeros"
            and isinstance(conv.padding, tuple) and in_cpu_step_precision(x, conv.weight)
            and not (isinstance(conv, PatchMatmulConv2d) and conv.patch_matmul_applies(x))
            and torch.backends.mkldnn.enabled and onednn_conv_relu_available())


@functools.cache
def onednn_conv_relu_available() -> bool:
    """Whether this torch has oneDNN's convolution with post-ops: ``mkldnn._convolution_pointwise``
    is an operator of torch's compiler, not a public API, so a torch without it keeps the modules."""
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def conv_relu(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """relu(conv(x)), in bf16 under bf16 autocast as conv2d would be."""
    weight, bias = conv.weight, conv.bias
    if torch.is_autocast_enabled("cpu"):
        x, weight = x.to(torch.bfloat16), weight.to(torch.bfloat16)
        bias = None if bias is None else bias.to(torch.bfloat16)
    return ConvReLU.apply(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)


class ConvReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, int],
                padding: tuple[int, int], dilation: tuple[int, int], groups: int) -> torch.Tensor:
        out = torch.ops.mkldnn._convolution_pointwise(x, weight, bias, padding, stride, dilation, groups, "relu",
                                                      [], "")
        ctx.save_for_backward(x, weight, out)
        ctx.conv = stride, padding, dilation, groups, bias is not None
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight, out = ctx.saved_tensors
        stride, padding, dilation, groups, has_bias = ctx.conv
        grad = torch.ops.aten.threshold_backward(grad, out, 0)
        grads = torch.ops.aten.convolution_backward(
            grad, x, weight, [weight.shape[0]] if has_bias else None, stride, padding, dilation, False, [0, 0],
            groups, list(ctx.needs_input_grad[:3]))
        return (*grads[:2], grads[2] if has_bias else None, None, None, None, None)


def patch_matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 stride: tuple[int, int], padding: tuple[int, int]) -> torch.Tensor:
    """F.conv2d (no groups or dilation) as one matmul: each output position's patch, read in the
    channels_last order (row, column, channel) that the weight has in channels_last memory."""
    filters, _, kernel_h, kernel_w = weight.shape
    x = F.pad(x, (padding[1], padding[1], padding[0], padding[0])).permute(0, 2, 3, 1)
    batch, height, width, channels = x.shape
    out_h, out_w = (height - kernel_h) // stride[0] + 1, (width - kernel_w) // stride[1] + 1
    patches = torch.stack([x[:, i:i + stride[0] * (out_h - 1) + 1:stride[0], j:j + stride[1] * (out_w - 1) + 1:stride[1]]
                           for i in range(kernel_h) for j in range(kernel_w)], dim=3)
    out = dense(patches.reshape(batch * out_h * out_w, kernel_h * kernel_w * channels),
                weight.permute(0, 2, 3, 1).reshape(filters, -1), bias)
    return out.view(batch, out_h, out_w, filters).permute(0, 3, 1, 2)


@dataclass(frozen=True)
class Conv:
    """Conv2d; padding "valid", "same" (stride 1, odd kernel) or a number of pixels."""

    filters: int
    kernel: int
    stride: int = 1
    padding: str | int = "valid"
    groups: int = 1
    bias: bool = True

    def build(self, channels: int) -> tuple[nn.Module, int]:
        if self.padding == "valid":
            pad = 0
        elif self.padding == "same":
            if self.stride != 1 or self.kernel % 2 == 0:
                raise ValueError("'same' padding is only exact for stride 1 and odd kernels")
            pad = self.kernel // 2
        else:
            pad = int(self.padding)
        if channels % self.groups:
            raise ValueError(f"{channels} input channels do not split into {self.groups} groups")
        conv = PatchMatmulConv2d(channels, self.filters, self.kernel, self.stride, pad,
                                 groups=self.groups, bias=self.bias)
        return conv, self.filters


@dataclass(frozen=True)
class Dense:
    units: int
    bias: bool = True
    logits: bool = False  # the output layer (LogitsLinear)


@dataclass(frozen=True)
class MaxPool:
    size: int
    stride: int | None = None


@dataclass(frozen=True)
class AvgPool:
    size: int
    stride: int | None = None


@dataclass(frozen=True)
class BN:
    """BatchNorm over channels (features); Keras' defaults (momentum 0.99 is torch's 0.01)."""

    eps: float = 1e-3
    momentum: float = 0.01


TORCH_BN = BN(eps=1e-5, momentum=0.1)
"""PyTorch's BatchNorm defaults: running statistics that follow short trainings closely."""


@dataclass(frozen=True)
class ReLU:
    pass


@dataclass(frozen=True)
class GlobalPool:
    """Max or average over the whole feature map, whatever the input size (1x1 out)."""

    kind: str = "avg"


@dataclass(frozen=True)
class Residual:
    """x + body(x), the shortcut of He et al. (2016); the body keeps the map's shape."""

    body: tuple


@dataclass(frozen=True)
class Dropout:
    rate: float


@dataclass(frozen=True)
class Whiten:
    """A fixed convolution that whitens ``patch`` x ``patch`` pixel patches (PatchWhitening),
    fitted to the training images before the first step."""

    patch: int = 2


@dataclass(frozen=True)
class LRN:
    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0


Layer = Conv | Dense | MaxPool | AvgPool | BN | ReLU | Dropout | LRN | GlobalPool | Residual | Whiten


def fix_weight(module: nn.Module) -> None:
    """Turn ``module.weight`` from a parameter into a buffer of the same values: no optimizer,
    weight decay, freezing or unfreezing can train it, and state dicts keep their keys."""
    value = module.weight.detach().clone()
    del module.weight
    module.register_buffer("weight", value)


class PatchWhitening(nn.Conv2d):
    """A convolution whose filters are the principal directions of the training images'
    patches, each scaled to unit variance, and their negatives (so a ReLU after it loses
    nothing): the first layer then hands decorrelated inputs to the rest, which speeds up early
    training (Page, "How to Train Your ResNet 7", 2018; Jordan, "94% on CIFAR-10 in 3.29
    Seconds on a Single GPU", 2024). The filters are a buffer, fitted once (``fit``) and never
    trained; the bias is trained. Unfitted, the filters are random."""

    def __init__(self, in_channels: int, patch: int):
        directions = in_channels * patch * patch
        super().__init__(in_channels, 2 * directions, patch, bias=True)
        fix_weight(self)

    @torch.no_grad()
    def fit(self, images: torch.Tensor, eps: float = 5e-4) -> None:
        """Fit the filters to standardised images (N, C, H, W)."""
        channels, patch = self.in_channels, self.kernel_size[0]
        dims = channels * patch * patch
        moments, count = torch.zeros(dims, dims, dtype=torch.float64, device=images.device), 0
        for chunk in images.split(64):  # a few MB of patches at a time, whatever the image size
            patches = chunk.float().unfold(2, patch, 1).unfold(3, patch, 1)   # N, C, H', W', p, p
            patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, dims).double()
            moments += patches.T @ patches
            count += len(patches)
        variances, directions = torch.linalg.eigh(moments / count)
        filters = (directions.T / (variances.clamp_min(0) + eps).sqrt()[:, None])
        filters = filters.reshape(-1, channels, patch, patch).flip(0)   # largest variance first
        self.weight.copy_(torch.cat([filters, -filters]).to(self.weight))


def fit_whitening(model: nn.Module, images: torch.Tensor) -> None:
    """Fit every PatchWhitening layer of ``model`` to ``images`` (standardised, N x C x H x W,
    as the model's input). A whitening layer is the first layer of the nets that have one, so
    the images are what it sees."""
    for module in model.modules():
        if isinstance(module, PatchWhitening):
            module.fit(images.to(module.weight.device))


def whitening_biases(model: nn.Module) -> list[nn.Parameter]:
    """The trained biases of ``model``'s PatchWhitening layers."""
    return [module.bias for module in model.modules() if isinstance(module, PatchWhitening)]


def fix_whitening_biases(model: nn.Module) -> nn.Module:
    """``model`` with its whitening biases no longer trained (airbench's after its warm-up)."""
    for bias in whitening_biases(model):
        bias.requires_grad_(False)
    return model


class ResidualBlock(nn.Module):
    def __init__(self, body: nn.Sequential):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def build_layers(layers, width: int, spatial: bool) -> tuple[nn.Sequential, int]:
    """The modules for a table of rows, given the incoming channel (or feature) count."""
    modules = []
    for layer in layers:
        module, width = build_layer(layer, width, spatial)
        modules.append(module)
    return ConvReLUSequential(*modules), width


def build_layer(layer: Layer, width: int, spatial: bool) -> tuple[nn.Module, int]:
    """The module for one table row, given the incoming channel (or feature) count."""
    match layer:
        case Conv():
            return layer.build(width)
        case Dense(units, bias, logits):
            return (LogitsLinear if logits else OneDnnLinear)(width, units, bias=bias), units
        case MaxPool(size, stride):
            return nn.MaxPool2d(size, stride or size), width
        case AvgPool(size, stride):
            return TilingAvgPool2d(size, stride or size), width
        case BN(eps, momentum):
            norm = nn.BatchNorm2d if spatial else nn.BatchNorm1d
            return norm(width, eps=eps, momentum=momentum), width
        case ReLU():
            return nn.ReLU(inplace=True), width
        case Dropout(rate):
            return UniformMaskDropout(rate), width
        case LRN(size, alpha, beta, k):
            return LocalResponseNorm(size, alpha, beta, k), width
        case GlobalPool(kind):
            if kind not in ("avg", "max"):
                raise ValueError(f"global pooling is avg or max, not {kind!r}")
            return (nn.AdaptiveAvgPool2d(1) if kind == "avg" else nn.AdaptiveMaxPool2d(1)), width
        case Whiten(patch):
            layer = PatchWhitening(width, patch)
            return layer, layer.out_channels
        case Residual(body):
            block, out = build_layers(body, width, spatial)
            if out != width:
                raise ValueError(f"a residual body must keep {width} channels, not {out}")
            return ResidualBlock(block), width
    raise TypeError(f"not a layer: {layer!r}")


def output_size(layers: list[Layer], size: tuple[int, int]) -> tuple[int, int]:
    """Height and width after the spatial layers, by the floor arithmetic of valid windows."""
    height, width = size
    for layer in layers:
        match layer:
            case GlobalPool():
                height, width = min(height, 1), min(width, 1)
                continue
            case Residual(body):
                if output_size(list(body), (height, width)) != (height, width):
                    raise ValueError("a residual body must keep the map's height and width")
                continue
            case Conv(_, kernel, stride, padding):
                pad = kernel // 2 if padding == "same" else (0 if padding == "valid" else padding)
            case Whiten(kernel):
                pad, stride = 0, 1
            case MaxPool(kernel, stride) | AvgPool(kernel, stride):
                pad, stride = 0, stride or kernel
            case _:
                continue
        height = (height + 2 * pad - kernel) // stride + 1
        width = (width + 2 * pad - kernel) // stride + 1
    return height, width


def smallest_input(layers: list[Layer]) -> int:
    """The smallest square input side that leaves at least one pixel after ``layers``."""
    side = 1
    while min(output_size(layers, (side, side))) < 1:
        side += 1
    return side
