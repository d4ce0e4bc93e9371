from __future__ import annotations

import copy
import json
import shutil
import types
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.checkpoint import load_checkpoint
from cnnlab.errors import CnnlabError
from cnnlab.models import MODELS, count_params, create_model, layers, place_model, summarize
from cnnlab.models.alexnet import towers
from cnnlab.models.layers import (
    LayoutKeepingFlatten,
    LocalResponseNorm,
    OneDnnLinear,
    PatchMatmulConv2d,
    PatchWhitening,
    TilingAvgPool2d,
    UniformMaskDropout,
)
from cnnlab.models.weights import load_weights
from conftest import make_image_folder, run_cli

ALL_MODELS = MODELS.names()
# at the defaults, the 130M-parameter VGGs make the per-model checks below slow; the count
# rows still cover them at full size
SMALL_INPUT = {"vgg16": (64, 64), "vgg16-bn": (64, 64), "vgg16-transfer": (64, 64),
               "small-cnn": (64, 64), "alexnet": (99, 99), "alexnet-bn": (99, 99),
               "alexnet-half": (99, 99)}


def build(name, **kwargs):
    torch.manual_seed(0)
    info = MODELS.get(name)
    return create_model(name, input_size=SMALL_INPUT.get(name), **kwargs), info


@pytest.mark.parametrize("name", ALL_MODELS)
def test_parameter_count_matches_metadata(name):
    info = MODELS.get(name)
    assert count_params(create_model(name)).total == info.params


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_backward_shape_and_finite(name):
    model, info = build(name, num_classes=7)
    height, width = model.input_size
    x = torch.randn(2, info.input_size[2], height, width)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.logsumexp(1).mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_any_channels_and_classes(name):
    channels = 1 if MODELS.get(name).input_size[2] == 3 else 3
    model, _ = build(name, num_classes=3, in_channels=channels)
    x = torch.randn(2, model.in_channels, *model.input_size)
    assert model.eval()(x).shape == (2, 3)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_same_seed_same_output(name):
    first, _ = build(name)
    second, _ = build(name)
    x = torch.randn(2, first.in_channels, *first.input_size)
    torch.testing.assert_close(first.eval()(x), second.eval()(x))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_channels_last_and_bf16_close_to_fp32(name):
    model, _ = build(name)
    model.eval()
    x = torch.randn(2, model.in_channels, *model.input_size)
    with torch.no_grad():
        reference = model(x)
        cl_model = build(name)[0].eval().to(memory_format=torch.channels_last)
        torch.testing.assert_close(cl_model(x.to(memory_format=torch.channels_last)), reference,
                                   rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x).float()
    scale = reference.abs().max().clamp_min(1e-3)
    assert ((low - reference).abs().max() / scale) < 0.1


@pytest.mark.parametrize("name", ALL_MODELS)
def test_the_output_layer_computes_in_fp32_under_autocast(name):
    """In bf16 a logit keeps 8 significant bits: of 1,360 flower photos a resnet9 run scored in
    bf16, cnnlab predict gave 14 their two most likely classes at the same probability (the
    top one then decided by the classes' order). The output layer now computes in fp32 from
    the layer before's bf16 features."""
    model, _ = build(name, num_classes=7)
    model.eval()
    x = torch.randn(4, model.in_channels, *model.input_size)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x)
        hidden = model.classifier[:-1](model.flatten(model.features(x)))
    assert logits.dtype == torch.float32
    with torch.no_grad():
        torch.testing.assert_close(logits, model.classifier[-1](hidden.float()), rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.parametrize("name", ALL_MODELS)
def test_gpu_outputs_and_gradients_are_the_cpus(name, monkeypatch):
    """Every model on a GPU, where cnnlab's CPU layers (LRN, the patch matmul, oneDNN dense
    layers, mask dropout, the tiling pool) hand over to torch's own: in fp32 its outputs and
    gradients are the CPU's, to rounding; a training step under bf16 autocast is finite.
    Gradients are compared with cuDNN off: its fp32 weight gradients on an H100 were 2e-4
    (alexnet) to 4e-2 (vgg16) from float64's even without TF32, where the CPU's and torch's
    own CUDA convolutions' were 1e-6 (docs/distributed.md)."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    on_cpu, _ = build(name, num_classes=7)
    on_gpu = build(name, num_classes=7)[0].cuda()
    inputs = torch.Generator().manual_seed(0)
    x = torch.randn(2, on_cpu.in_channels, *on_cpu.input_size, generator=inputs)
    projection = torch.randn(2, 7, generator=inputs)  # a loss whose gradient does not cancel as a softmax's does
    reference = on_cpu.eval()(x)
    (reference * projection).sum().backward()
    assert relative_error(on_gpu.eval()(x.cuda()).cpu(), reference) < 1e-4  # with cuDNN
    monkeypatch.setattr(torch.backends.cudnn, "enabled", False)
    out = on_gpu(x.cuda())
    (out * projection.cuda()).sum().backward()
    assert relative_error(out.cpu(), reference) < 1e-4
    for (layer, cpu_weight), gpu_weight in zip(on_cpu.named_parameters(), on_gpu.parameters(), strict=True):
        if cpu_weight.grad is not None:
            assert relative_error(gpu_weight.grad.cpu(), cpu_weight.grad) < 1e-4, layer
    monkeypatch.undo()
    on_gpu.train().zero_grad()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        on_gpu(x.cuda()).float().logsumexp(1).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in on_gpu.parameters() if p.requires_grad)


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value - reference).norm() / reference.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("name", ["lenet5", "vgg16"])
@pytest.mark.parametrize(("precision", "training"), [("fp32", True), ("bf16", True), ("fp32", False)])
def test_models_are_placed_in_their_measured_memory_layout(name, precision, training):
    """channels_last, but NCHW for the models registered as training faster so in fp32 on a
    CPU; their convolutions then run NCHW whatever layout the batches arrive in."""
    model = create_model(name, 3, 1 if name == "lenet5" else 3, (32, 32)).eval()
    x = torch.randn(2, 1 if name == "lenet5" else 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
    placed = place_model(model, name, torch.device("cpu"), precision, training)
    nchw = MODELS.get(name).nchw_training_on_cpu and precision == "fp32" and training
    assert MODELS.get("vgg16").nchw_training_on_cpu and MODELS.get("vgg16-bn").nchw_training_on_cpu
    assert not MODELS.get("lenet5").nchw_training_on_cpu
    weight = next(p for p in placed.parameters() if p.dim() == 4)
    layout = torch.contiguous_format if nchw else torch.channels_last
    assert weight.is_contiguous(memory_format=layout)
    seen = []
    conv = next(m for m in placed.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, args, out: seen.append(out.is_contiguous(memory_format=layout)))
    with torch.no_grad():
        out = placed(x.contiguous(memory_format=torch.channels_last))
    assert seen == [True]
    torch.testing.assert_close(out, reference, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name, input_size, classes, options, total, non_trainable", [
    ("alexnet", (227, 227), 1000, {}, 60_965_224, 0),
    ("alexnet", (227, 227), 1000, {"groups": 1}, 62_378_344, 0),
    ("alexnet-half", (227, 227), 45, {}, 14_674_221, 352),
    ("alexnet-bn", (150, 150), 10, {}, 30_049_034, 19_136),
    ("alexnet-bn", (227, 227), 10, {}, 58_360_586, 19_136),
    ("simple-cnn", (32, 32), 100, {}, 6_850_792, 0),
    ("small-cnn", (224, 224), 17, {}, 9_536_945, 0),
    ("vgg16-transfer", (224, 224), 17, {}, 21_141_841, 0),
    ("vgg16", (224, 224), 17, {}, 134_330_193, 0),
    ("airbench", (32, 32), 10, {}, 1_975_106, 2_592),
    ("airbench", (32, 32), 10, {"widths": [32, 128, 128]}, 499_266, 1_440),
])
def test_spec_parameter_counts(name, input_size, classes, options, total, non_trainable):
    counts = count_params(create_model(name, classes, 3, input_size, **options))
    assert (counts.total, counts.non_trainable) == (total, non_trainable)


def test_spec_feature_widths_and_bases():
    assert create_model("alexnet-bn", 10, 3, (150, 150)).feature_width == 2304
    assert create_model("alexnet-bn", 10, 3, (227, 227)).feature_width == 9216
    assert create_model("alexnet-mnist").feature_width == 2304
    base = create_model("vgg16-transfer").features
    assert sum(p.numel() for p in base.parameters()) == 14_714_688
    # SPEC 1.4 gives the tutorial's count before BatchNorm
    mnist = create_model("alexnet-mnist")
    bn = sum(4 * m.num_features for m in mnist.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert count_params(mnist).total - bn == 29_455_178


def test_frozen_base_counts_as_non_trainable():
    counts = count_params(create_model("vgg16-transfer", freeze_base=True))
    assert counts.non_trainable == 14_714_688
    assert counts.trainable == 21_141_841 - 14_714_688


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_with_a_convolutional_base_can_freeze_it(name):
    """Keras' ``base.trainable = False`` and fastai's ``learn.freeze()`` for any model, not
    only vgg16-transfer: fine-tuning your own pretrained small-cnn trains its dense layers
    first. A model with no convolutional base says so."""
    if not list(build(name)[0].features.parameters()):
        with pytest.raises(CnnlabError, match=f"model {name}: option 'freeze_base': it has no convolutional "
                                              "base to freeze"):
            build(name, freeze_base=True)
        return
    model, _ = build(name, freeze_base=True)
    assert "freeze_base" in MODELS.get(name).options
    assert not any(p.requires_grad for p in model.features.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
    model.train()
    assert not any(m.training for m in model.features.modules()
                   if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))


@pytest.mark.parametrize("name", ALL_MODELS)
def test_the_base_trains_only_its_last_layers_where_asked(name):
    """Keras' fine-tuning of "the top layers of the base" (its guide's fine_tune_at),
    torchvision's trainable_backbone_layers: of the base's weighted layers (each convolution with
    its BatchNorm) only the last N train; those before them stay frozen, their BatchNorm
    statistics too."""
    model, _ = build(name)
    layers = model.base_layers()
    if not layers:
        assert not list(model.features.parameters())
        return
    assert all(isinstance(modules[0], torch.nn.Conv2d) for modules in layers)
    owned = {id(p) for modules in layers for module in modules for p in module.parameters(recurse=False)}
    assert owned == {id(p) for p in model.features.parameters()}  # every base parameter is in a layer

    def trains(modules):
        return [p.requires_grad for module in modules for p in module.parameters(recurse=False)]

    def norms(modules):
        return [m.training for m in modules if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]

    model.freeze_features(False, trainable_layers=1)
    model.train()
    assert all(trains(layers[-1])) and not any(flag for modules in layers[:-1] for flag in trains(modules))
    assert all(norms(layers[-1])) and not any(flag for modules in layers[:-1] for flag in norms(modules))
    assert all(p.requires_grad for p in model.classifier.parameters())
    model.freeze_features(False)
    model.train()
    assert all(p.requires_grad for p in model.features.parameters())
    assert all(m.training for m in model.features.modules())


@pytest.mark.parametrize("name, count", [("lenet5", 2), ("simple-cnn", 6), ("alexnet", 5), ("vgg16", 13),
                                         ("resnet9", 8), ("small-cnn", 4)])
def test_base_layers_are_the_models_convolutions(name, count):
    assert len(build(name)[0].base_layers()) == count


def test_summary_json_and_flops():
    model = create_model("alexnet-bn", 10, 3, (150, 150))
    summary = summarize(model, (150, 150, 3))
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["total_params"] == 30_049_034
    assert data["non_trainable_params"] == 19_136
    assert data["trainable_params"] == 30_029_898
    conv1 = data["layers"][0]
    assert conv1["output_shape"] == [96, 35, 35]
    assert conv1["flops"] == 2 * 11 * 11 * 3 * 96 * 35 * 35
    assert "Total params: 30,049,034" in summary.table()


@pytest.mark.parametrize("name", ["alexnet-bn", "simple-cnn", "lenet5", "vgg16"])
def test_too_small_input_names_smallest_size(name):
    """The message had named the CLI's train and summary flags to every caller."""
    with pytest.raises(CnnlabError, match=rf"^{name} needs inputs of at least (\d+)x\1; got 4x4$"):
        create_model(name, input_size=(4, 4))


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("sizes, message", [
    (dict(num_classes=0), "num_classes: must be at least 1; got 0"),
    (dict(in_channels=0), "in_channels: must be at least 1; got 0"),
    (dict(num_classes=-3), "num_classes: must be at least 1; got -3"),
])
def test_a_model_of_no_classes_or_channels_is_refused(name, sizes, message):
    """create_model(NAME, num_classes=0) built the model's default 1000 or 10 classes: a 0 was
    taken for "not given"."""
    with torch.device("meta"), pytest.raises(CnnlabError, match=f"^{message}$"):
        create_model(name, **sizes)


def test_smallest_size_is_exact():
    # alexnet-bn: 11x11 stride 4, then three 3x3/2 pools
    with pytest.raises(CnnlabError, match="at least 67x67"):
        create_model("alexnet-bn", input_size=(66, 66))
    create_model("alexnet-bn", input_size=(67, 67))


def lrn_loop(a, n=5, k=2.0, alpha=1e-4, beta=0.75):
    out = torch.empty_like(a)
    channels = a.shape[1]
    for i in range(channels):
        low, high = max(0, i - n // 2), min(channels - 1, i + n // 2)
        total = (a[:, low: high + 1] ** 2).sum(1)
        out[:, i] = a[:, i] / (k + alpha * total) ** beta
    return out


@pytest.mark.parametrize("channels", [1, 3, 7, 96])
def test_lrn_matches_the_paper_formula(channels):
    torch.manual_seed(channels)
    a = torch.randn(2, channels, 5, 4, dtype=torch.float64) * 30  # large enough for LRN to bite
    torch.testing.assert_close(LocalResponseNorm()(a), lrn_loop(a))
    # and with a strong alpha, so the edge windows visibly differ from the middle ones
    strong = LocalResponseNorm(alpha=0.5)
    torch.testing.assert_close(strong(a), lrn_loop(a, alpha=0.5))


@pytest.mark.parametrize("channels", [1, 2, 7, 96])
@pytest.mark.parametrize("size", [3, 5])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_lrn_gradient_is_exact(channels, size, layout):
    torch.manual_seed(channels)
    a = (torch.randn(2, channels, 3, 4, dtype=torch.float64) * 30).contiguous(memory_format=layout)
    layer = LocalResponseNorm(size=size, alpha=0.5)
    assert torch.autograd.gradcheck(layer, (a.requires_grad_(),))


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_lrn_matches_torchs_values_and_gradients_and_keeps_the_layout(layout):
    torch.manual_seed(0)
    x = (torch.randn(4, 96, 9, 9) * 20).contiguous(memory_format=layout).requires_grad_()
    x_copy = x.detach().clone().contiguous(memory_format=layout).requires_grad_()
    out = LocalResponseNorm()(x)
    expected = torch.nn.functional.local_response_norm(x_copy, 5, 1e-4 * 5, 0.75, 2.0)
    torch.testing.assert_close(out, expected)
    grad = torch.randn_like(expected)
    out.backward(grad)
    expected.backward(grad)
    torch.testing.assert_close(x.grad, x_copy.grad)
    assert out.is_contiguous(memory_format=layout) and x.grad.is_contiguous(memory_format=layout)


def test_lrn_in_bf16_computes_in_fp32_and_answers_in_bf16():
    torch.manual_seed(0)
    x = (torch.randn(4, 96, 9, 9) * 20).contiguous(memory_format=torch.channels_last)
    low = x.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = LocalResponseNorm(alpha=0.01)(low)
    assert out.dtype == torch.bfloat16
    reference = x.bfloat16().double().requires_grad_()
    expected = lrn_loop(reference, alpha=0.01)
    torch.testing.assert_close(out.double(), expected, rtol=1e-2, atol=1e-2)
    grad = torch.randn_like(x)
    out.backward(grad.bfloat16())
    expected.backward(grad.bfloat16().double())
    assert low.grad.dtype == torch.bfloat16
    torch.testing.assert_close(low.grad.double(), reference.grad, rtol=2e-2, atol=2e-3)


def test_lrn_leaves_tracing_to_torchs_lrn():
    x = torch.randn(2, 8, 3, 3).contiguous(memory_format=torch.channels_last)
    with warnings.catch_warnings():  # torch's own LRN reads input.numel() as a Python value
        warnings.simplefilter("ignore")
        graph = str(torch.jit.trace(LocalResponseNorm(), x, check_trace=False).graph)
    assert "avg_pool3d" in graph and "ChannelWindowLRN" not in graph


@pytest.mark.parametrize(("p", "mask_bits"), [(0.0, None), (0.2, None), (0.25, None), (0.5, None), (0.5, 16),
                                               (0.9, None), (1.0, None)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_uniform_mask_dropout_is_inverted_dropout(p, mask_bits, layout):
    torch.manual_seed(0)
    layer = UniformMaskDropout(p, mask_bits=mask_bits)
    x = torch.rand(200, 50, 10, 10) + 1  # no zeros, so every zero out is a dropped value
    x = x.contiguous(memory_format=layout).requires_grad_()
    y = layer(x)
    dropped = y == 0
    assert abs(dropped.float().mean().item() - p) < 0.005
    if p < 1:
        torch.testing.assert_close(y[~dropped], x[~dropped] / (1 - p))
        y.sum().backward()
        torch.testing.assert_close(x.grad, (~dropped).float() / (1 - p))
        assert y.is_contiguous(memory_format=layout)
    layer.eval()
    assert torch.equal(layer(x), x)


@pytest.mark.parametrize("p", [0.5, 0.3])  # 8 bits a value, eight to a draw; 16 bits, four
def test_uniform_mask_dropout_masks_are_independent_across_positions(p):
    torch.manual_seed(0)
    kept = UniformMaskDropout(p)(torch.ones(4, 8, 16, 16).contiguous(memory_format=torch.channels_last)) > 0
    flat = kept.flatten().float()
    # neighbours share a 64-bit draw; their masks must still be uncorrelated
    for lag in (1, 2, 4):
        assert abs(torch.corrcoef(torch.stack([flat[:-lag], flat[lag:]]))[0, 1].item()) < 0.05
    assert abs(kept.float().mean().item() - (1 - p)) < 0.03


def test_uniform_mask_dropout_mask_bits():
    assert [UniformMaskDropout(p).mask_bits for p in (0.5, 0.25, 0.2, 0.9)] == [8, 8, 16, 16]
    assert [UniformMaskDropout(p).mask_bits for p in (0, 1)] == [8, 8]  # a config may give an int
    assert UniformMaskDropout(0.5, mask_bits=16).mask_bits == 16
    with pytest.raises(ValueError, match="mask_bits is 8 or 16"):
        UniformMaskDropout(0.5, mask_bits=4)


@pytest.mark.parametrize(("bits", "dtype"), [(8, torch.int8), (16, torch.int16)])
def test_random_integers_cover_their_range_evenly_in_the_inputs_layout(bits, dtype):
    torch.manual_seed(0)
    levels = 2**bits
    x = torch.empty(64, 16, 20, 20).contiguous(memory_format=torch.channels_last)
    values = layers.random_integers_like(x, bits)
    assert values.dtype == dtype and values.shape == x.shape
    assert values.is_contiguous(memory_format=torch.channels_last)
    shifted = values.flatten().long() + levels // 2
    assert shifted.min() >= 0 and shifted.max() < levels
    # 409,600 values in 256 equal bins: about 1,600 each, a spread of a few times 40
    counts = torch.bincount(shifted * 256 // levels, minlength=256).float()
    assert (counts.max() - counts.min()) / counts.mean() < 0.25


def test_uniform_mask_dropout_follows_the_seed():
    x = torch.ones(1000)
    first = (torch.manual_seed(3), UniformMaskDropout(0.5)(x))[1]
    again = (torch.manual_seed(3), UniformMaskDropout(0.5)(x))[1]
    assert torch.equal(first, again)


def counted(patcher: pytest.MonkeyPatch, name: str) -> list[int]:
    """A list that grows by one at each call of ``layers.<name>``, which still runs."""
    original, calls = getattr(layers, name), []
    patcher.setattr(layers, name, lambda *args: calls.append(1) or original(*args))
    return calls


@pytest.fixture
def onednn_calls(monkeypatch):
    """How often the dense layers' oneDNN product ran."""
    return counted(monkeypatch, "onednn_matmul")


@pytest.mark.parametrize(("batch", "features", "units"), [(1, 256, 256), (64, 2048, 43), (7, 9216, 10)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("frozen", ["nothing", "input", "weight"])
def test_onednn_linear_matches_torch_linear(batch, features, units, bias, frozen, onednn_calls):
    torch.manual_seed(0)
    layer = OneDnnLinear(features, units, bias=bias)
    reference = torch.nn.Linear(features, units, bias=bias)
    reference.load_state_dict(layer.state_dict())
    layer.weight.requires_grad_(frozen != "weight")
    reference.weight.requires_grad_(frozen != "weight")
    x = torch.randn(batch, features, requires_grad=frozen != "input")
    x_copy = x.detach().clone().requires_grad_(x.requires_grad)
    grad = torch.randn(batch, units)
    out, expected = layer(x), reference(x_copy)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    out.backward(grad)
    expected.backward(grad)
    for mine, theirs in [(x, x_copy), *zip(layer.parameters(), reference.parameters(), strict=True)]:
        assert (mine.grad is None) == (theirs.grad is None)
        if mine.grad is not None:
            torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-5, atol=1e-5)
    assert len(onednn_calls) == 1 + (frozen != "input") + (frozen != "weight")


def test_onednn_linear_leaves_autocast_tracing_small_layers_and_other_shapes_to_torch(onednn_calls):
    layer = OneDnnLinear(512, 128)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(torch.randn(2, 512)).dtype == torch.bfloat16
    assert "linear_pointwise" not in str(traced_quietly(layer, torch.randn(2, 512)).graph)
    assert layer(torch.randn(4, 2, 512)).shape == (4, 2, 128)
    assert layer.double()(torch.randn(2, 512, dtype=torch.float64)).dtype == torch.float64
    OneDnnLinear(400, 120)(torch.randn(2, 400))
    assert not onednn_calls
    layer.float()(torch.randn(2, 512))
    assert len(onednn_calls) == 1


def traced_quietly(module, x):
    """torch.jit.trace (what ONNX export runs) with its warnings as errors: the layers' choice of
    path must not read traced shapes as Python values."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # jit.trace's own, in torch 2.13
        return torch.jit.trace(module, x, check_trace=False)


@pytest.mark.parametrize("lacking", ["x86 with AVX", "the oneDNN matmul operator"])
def test_cpus_or_torch_builds_without_the_onednn_matmul_keep_torchs_own_paths(lacking, onednn_calls, monkeypatch):
    with monkeypatch.context() as patch:
        if lacking == "x86 with AVX":
            patch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "DEFAULT")
        else:
            patch.setattr(torch.ops, "mkldnn", types.SimpleNamespace())
        layers.onednn_matmul_available.cache_clear()
        try:
            assert not layers.onednn_matmul_available()
            OneDnnLinear(512, 128)(torch.randn(2, 512))
            PatchMatmulConv2d(64, 128, 3)(torch.randn(2, 64, 4, 4))
            if lacking == "the oneDNN matmul operator":  # and the convolution with post-ops
                layers.onednn_conv_relu_available.cache_clear()
                assert not layers.onednn_conv_relu_available()
                layers.ConvReLUSequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU())(torch.randn(2, 3, 8, 8))
        finally:
            layers.onednn_matmul_available.cache_clear()
            layers.onednn_conv_relu_available.cache_clear()
    assert not onednn_calls
    assert layers.onednn_matmul_available() and layers.onednn_conv_relu_available()


def test_patch_matmul_conv_leaves_tracing_to_conv2d(onednn_calls):
    conv = PatchMatmulConv2d(64, 128, 3)
    graph = str(traced_quietly(conv, torch.randn(2, 64, 4, 4)).graph)
    assert "_convolution" in graph and "linear_pointwise" not in graph
    assert not onednn_calls


@pytest.mark.parametrize(("size", "stride", "padding", "positions"), [
    ((4, 4), 1, 0, 4), ((3, 3), 2, 1, 4), ((2, 2), 1, 1, 4), ((4, 3), 1, 0, 2), ((5, 5), 1, 0, 9), ((8, 8), 2, 1, 16)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("precision", ["fp32", "bf16", "bf16-input"])
def test_patch_matmul_conv_matches_conv2d_and_takes_only_tiny_maps(size, stride, padding, positions, bias, layout,
                                                                   precision, onednn_calls, monkeypatch):
    """bf16-input: under autocast with the input in bf16, as the layer before hands it over in
    a bf16 training step."""
    patch_calls = counted(monkeypatch, "patch_matmul")
    torch.manual_seed(0)
    conv = PatchMatmulConv2d(64, 128, 3, stride, padding, bias=bias).to(memory_format=layout)
    reference = torch.nn.Conv2d(64, 128, 3, stride, padding, bias=bias)
    reference.load_state_dict(conv.state_dict())
    x = torch.randn(3, 64, *size, dtype=torch.bfloat16 if precision == "bf16-input" else torch.float32)
    x = x.contiguous(memory_format=layout).requires_grad_()
    x_copy = x.detach().clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "fp32"):
        out, expected = conv(x), reference(x_copy)
    tolerance = {"rtol": 1e-4, "atol": 1e-4} if precision == "fp32" else {"rtol": 0.02, "atol": 0.05}
    assert out.dtype == expected.dtype
    torch.testing.assert_close(out, expected, **tolerance)
    grad = torch.randn_like(expected)
    out.backward(grad)
    expected.backward(grad)
    for mine, theirs in [(x, x_copy), *zip(conv.parameters(), reference.parameters(), strict=True)]:
        torch.testing.assert_close(mine.grad, theirs.grad, **tolerance)
    assert len(patch_calls) == (positions <= 4)
    assert len(onednn_calls) == (3 if positions <= 4 and precision == "fp32" else 0)


@pytest.fixture
def fused_calls(monkeypatch):
    """How often a convolution and its ReLU ran as one oneDNN convolution."""
    return counted(monkeypatch, "conv_relu")


def unfused(sequence: torch.nn.Sequential) -> torch.nn.Sequential:
    """The same modules run one by one, nn.Sequential's way."""
    plain = copy.deepcopy(sequence)
    plain.forward = types.MethodType(torch.nn.Sequential.forward, plain)
    return plain


@settings(max_examples=40, deadline=None)
@given(channels=st.sampled_from([(1, 1, 1), (3, 8, 1), (4, 6, 2), (6, 9, 3), (16, 16, 1)]),
       kernel=st.integers(1, 3), stride=st.integers(1, 2), padding=st.integers(0, 1), side=st.integers(3, 9),
       bias=st.booleans(), layout=st.sampled_from([torch.channels_last, torch.contiguous_format]),
       precision=st.sampled_from(["fp32", "bf16", "bf16-input"]), input_grad=st.booleans())
def test_a_convolution_and_its_relu_run_as_one_with_the_same_values_and_gradients(
        channels, kernel, stride, padding, side, bias, layout, precision, input_grad):
    """ConvReLUSequential: oneDNN's convolution with a ReLU post-op, forward and backward, gives
    what the convolution then the ReLU give, for any shape, groups, layout and precision."""
    in_channels, out_channels, groups = channels
    torch.manual_seed(0)
    fused = layers.ConvReLUSequential(PatchMatmulConv2d(in_channels, out_channels, kernel, stride, padding,
                                                        groups=groups, bias=bias), torch.nn.ReLU(inplace=True))
    fused = fused.to(memory_format=layout)
    plain = unfused(fused)
    x = torch.randn(2, in_channels, side, side, dtype=torch.bfloat16 if precision == "bf16-input" else torch.float32)
    x = x.contiguous(memory_format=layout).requires_grad_(input_grad)
    x_copy = x.detach().clone().requires_grad_(input_grad)
    with pytest.MonkeyPatch.context() as patcher, torch.autocast("cpu", dtype=torch.bfloat16,
                                                                 enabled=precision != "fp32"):
        calls = counted(patcher, "conv_relu")
        out, expected = fused(x), plain(x_copy)
    assert calls == [1] and out.dtype == expected.dtype and (out >= 0).all()
    tolerance = {"rtol": 1e-5, "atol": 1e-5} if precision == "fp32" else {"rtol": 0.02, "atol": 0.02}
    torch.testing.assert_close(out, expected, **tolerance)
    grad = torch.randn_like(expected)
    out.backward(grad)
    expected.backward(grad)
    pairs = [*zip(fused.parameters(), plain.parameters(), strict=True)] + ([(x, x_copy)] if input_grad else [])
    for mine, theirs in pairs:
        torch.testing.assert_close(mine.grad, theirs.grad, **tolerance)


def test_conv_relu_pairs_are_fused_in_the_models_and_keep_their_modules(fused_calls):
    """small-cnn's four convolution + ReLU pairs run fused; the modules, their state dict and
    their rows stay, and a hook on either module of a pair (Grad-CAM's), tracing and the
    convolution taking the patch matmul run them one by one."""
    model, _ = build("small-cnn")
    model.train()
    x = torch.randn(2, 3, 64, 64)
    model(x)
    assert len(fused_calls) == 4
    assert [type(m).__name__ for m in model.features[:2]] == ["PatchMatmulConv2d", "ReLU"]
    seen = []
    hook = model.features[11].register_forward_hook(lambda module, args, output: seen.append(output.min().item()))
    model(x)
    hook.remove()
    assert len(fused_calls) == 7 and seen and seen[0] < 0  # the hooked conv's own output, before its ReLU
    traced_quietly(model.eval(), x)
    assert len(fused_calls) == 7
    layers.ConvReLUSequential(PatchMatmulConv2d(64, 128, 3), torch.nn.ReLU())(torch.randn(2, 64, 4, 4))
    assert len(fused_calls) == 7


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_dense_layer_is_a_onednn_linear(name):
    model, _ = build(name)
    dense = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert dense and all(isinstance(m, OneDnnLinear) for m in dense)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_flatten_gives_its_gradient_back_in_its_inputs_layout(name):
    model, _ = build(name)
    flattens = [m for m in model.modules() if isinstance(m, torch.nn.Flatten)]
    assert all(isinstance(m, LayoutKeepingFlatten) for m in flattens)


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_layout_keeping_flatten_matches_flatten_and_keeps_the_gradients_layout(layout):
    """The gradient that reaches the layer before the flatten (here a ReLU's output) is laid out
    as that layer's output is: nn.Flatten hands back an NCHW one."""
    torch.manual_seed(0)
    x = torch.randn(3, 8, 5, 4).contiguous(memory_format=layout).requires_grad_()
    x_copy = x.detach().clone().contiguous(memory_format=layout).requires_grad_()
    maps, maps_copy = x.relu(), x_copy.relu()
    arriving = {}  # a hook sees the gradient as it arrives (retain_grad keeps a contiguous copy)
    maps.register_hook(lambda grad: arriving.setdefault("mine", grad))
    maps_copy.register_hook(lambda grad: arriving.setdefault("torch", grad))
    weight = torch.randn(8 * 5 * 4, 6)
    out, expected = LayoutKeepingFlatten()(maps), torch.nn.Flatten()(maps_copy)
    assert torch.equal(out, expected)
    (out @ weight).sum().backward()
    (expected @ weight).sum().backward()
    assert torch.equal(x.grad, x_copy.grad)
    assert arriving["mine"].is_contiguous(memory_format=layout)
    assert arriving["torch"].is_contiguous()  # what nn.Flatten gives, whatever the layout
    assert LayoutKeepingFlatten()(torch.randn(3, 8, 5, 4).contiguous(memory_format=layout)).shape == (3, 160)


def test_layout_keeping_flatten_leaves_tracing_to_flatten():
    layer = LayoutKeepingFlatten()
    x = torch.randn(2, 8, 3, 3).contiguous(memory_format=torch.channels_last).requires_grad_()
    graph = str(traced_quietly(layer, x).graph)
    assert "flatten" in graph and "FlattenChannelsLast" not in graph


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_average_pool_is_a_tiling_avg_pool(name):
    model, _ = build(name)
    pools = [m for m in model.modules() if isinstance(m, torch.nn.AvgPool2d)]
    assert all(isinstance(m, TilingAvgPool2d) for m in pools)


@settings(max_examples=60, deadline=None)
@given(window=st.integers(1, 3), stride=st.sampled_from([None, 1, 2]), height=st.integers(3, 13),
       width=st.integers(3, 13), channels=st.integers(1, 9), channels_last=st.booleans(),
       dtype=st.sampled_from([torch.float32, torch.bfloat16]))
def test_tiling_avg_pool_matches_avg_pool_values_and_gradients(window, stride, height, width, channels,
                                                             channels_last, dtype):
    """Exact equality, upsampled or not: the upsampled path divides by the window's area as
    avg_pool2d_backward does. It is taken exactly where the windows tile a channels_last map."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    x = torch.randn(2, channels, height, width, dtype=dtype).contiguous(memory_format=layout).requires_grad_()
    x_copy = x.detach().clone().contiguous(memory_format=layout).requires_grad_()
    layer, reference = TilingAvgPool2d(window, stride), torch.nn.AvgPool2d(window, stride)
    out, expected = layer(x), reference(x_copy)
    assert torch.equal(out, expected)
    grad = torch.randn_like(expected)
    out.backward(grad)
    expected.backward(grad)
    assert torch.equal(x.grad, x_copy.grad)
    assert x.grad.is_contiguous(memory_format=layout)
    tiles = (stride in (None, window) and height % window == 0 and width % window == 0
             and channels_last and channels > 1 and height * width > 1)
    assert layer.tiling_window(x) == (window if tiles else None)


def test_tiling_avg_pool_leaves_tracing_and_inference_to_avg_pool():
    layer = TilingAvgPool2d(2)
    x = torch.randn(2, 8, 4, 4).contiguous(memory_format=torch.channels_last).requires_grad_()
    assert layer.tiling_window(x) == 2
    graph = str(traced_quietly(layer, x).graph)
    assert "avg_pool2d" in graph and "AvgPoolTiles" not in graph
    with torch.no_grad():
        assert layer(x).grad_fn is None


def test_alexnet_towers_and_paper_init():
    model = create_model("alexnet", init="paper")
    gpu0, gpu1 = towers(model)
    assert list(gpu0) == list(gpu1) == ["4", "10", "12"]
    assert gpu0["4"] == slice(0, 128) and gpu1["4"] == slice(128, 256)
    convs = [m for m in model.features if isinstance(m, torch.nn.Conv2d)]
    assert [float(c.bias.detach().mean()) for c in convs] == [0.0, 1.0, 0.0, 1.0, 1.0]
    assert abs(float(convs[0].weight.detach().std()) - 0.01) < 0.001
    assert len(towers(create_model("alexnet", groups=1))) == 1


def test_unknown_option():
    with pytest.raises(CnnlabError, match="model lenet5 has no option 'groups'"):
        create_model("lenet5", groups=2)


OPTIONS = [(name, option) for name in ALL_MODELS for option in MODELS.get(name).options]
WRONG_VALUES = [None, "x", 2, 1.5, True, [1], {"a": 1}]


@pytest.mark.parametrize(("name", "option"), OPTIONS)
def test_an_option_of_the_wrong_type_is_refused_by_name(name, option):
    """A mistyped --set model.options.X (a word for a number, one number for a list of
    widths) is a one-line error naming the model and option, never a traceback from inside
    the builder or a silently different network."""
    default = MODELS.get(name).option_defaults[option]
    wrong = [value for value in WRONG_VALUES if not _same_kind(value, default)]
    assert wrong
    for value in wrong:
        with pytest.raises(CnnlabError, match=f"model {name}: option '{option}' must be"):
            create_model(name, **{option: value})


def _same_kind(value, default) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return type(value) is type(default)
    if isinstance(default, (list, tuple, str)):
        return isinstance(value, type(default)) or isinstance(default, tuple) and isinstance(value, list)
    return isinstance(value, (int, float)) and isinstance(default, (int, float)) and (
        isinstance(default, float) or isinstance(value, int))


def test_weights_mismatch_lists_problems(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(create_model("simple-cnn", 10, 3, (32, 32)).state_dict(), path)
    with pytest.raises(CnnlabError, match=r"does not fit the model \(\d+ mismatches\): .*features"):
        load_weights(create_model("lenet5"), path, log=lambda m: None)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_weights_of_another_class_count_keep_all_but_the_output_layer(name, tmp_path):
    """Fine-tuning to new classes, as timm's ``num_classes=`` and Keras' replaced top layer
    do it: every layer but the last keeps the file's weights, the hidden dense layers too
    (small-cnn's first dense layer holds 96% of its parameters)."""
    source, _ = build(name, num_classes=10)
    path = tmp_path / "ten-classes.pt"
    torch.save(source.state_dict(), path)
    target, _ = build(name, num_classes=3)
    fresh_head = {key: value.clone() for key, value in target.head.state_dict().items()}
    messages = []
    load_weights(target, path, log=messages.append)
    head = {f"classifier.{len(target.classifier) - 1}.{key}" for key in fresh_head}
    for key, value in target.state_dict().items():
        if key not in head:
            torch.testing.assert_close(value, source.state_dict()[key], msg=key)
    for key, value in target.head.state_dict().items():
        torch.testing.assert_close(value, fresh_head[key])
    assert any("the output layer does not match" in m for m in messages), messages
    loaded = len(target.state_dict()) - len(head)
    assert f"loaded {loaded} of {len(target.state_dict())} tensors" in messages[-1]


def test_weights_of_another_classifier_start_the_whole_classifier_afresh(tmp_path):
    """A file whose hidden dense layers differ too (another design, or features flattened at
    another input size) keeps only what comes before the classifier: a half-loaded classifier
    would feed old layers from new ones."""
    source = create_model("lenet5", 10, 1, (36, 36))
    path = tmp_path / "other-size.pt"
    torch.save(source.state_dict(), path)
    target = create_model("lenet5", 3, 1, (28, 28))
    fresh = {key: value.clone() for key, value in target.classifier.state_dict().items()}
    messages = []
    load_weights(target, path, log=messages.append)
    for key, value in target.classifier.state_dict().items():
        torch.testing.assert_close(value, fresh[key])
    torch.testing.assert_close(target.features[0].weight, source.features[0].weight)
    assert any("the classifier does not match" in m for m in messages), messages


def test_a_runs_output_layer_is_kept_for_its_own_classes_only(tmp_path):
    """Fine-tuning a run's weights on other classes of the same number (MNIST's digits to
    Fashion-MNIST's clothes) kept its output layer, whose rows scored the old classes: the new
    class 0 started as the old class 0. The file's classes (a cnnlab checkpoint, or the
    safetensors file a run exports) now decide: other names start it afresh as another number
    of classes did; the same names keep it, each class its own row, also where the data holds
    them in another order or only some of them (a run on 43 signs fine-tuned on 5 of them)."""
    make_image_folder(tmp_path / "digits", classes=3)
    run_cli("train", "--model", "lenet5", "--data", f"folder:{tmp_path / 'digits'}", "--image-size", "20x20",
            "--epochs", "1", "--out", tmp_path / "runs", "--name", "source", "--no-report")
    checkpoint = tmp_path / "runs" / "source" / "best.pt"
    source = torch.load(checkpoint, weights_only=True)["state_dict"]
    exported = tmp_path / "source.safetensors"
    run_cli("export", tmp_path / "runs" / "source", "--format", "safetensors", "--out", exported)
    for path in (checkpoint, exported):
        for classes, rows in [(["class_0", "class_1", "class_2"], [0, 1, 2]), (["shirt", "shoe", "bag"], None),
                              (["class_2", "class_1", "class_0"], [2, 1, 0]), (["class_2", "class_0"], [2, 0]),
                              (["class_0", "zebra"], None)]:
            model, messages = create_model("lenet5", len(classes), 3, (20, 20)), []
            fresh = model.state_dict()["classifier.4.bias"].clone()
            load_weights(model, path, log=messages.append, classes=classes)
            state = model.state_dict()
            for key in ("classifier.4.weight", "classifier.4.bias"):
                expected = fresh if rows is None and key.endswith("bias") else source[key][rows] if rows else None
                if expected is not None:
                    assert torch.equal(state[key], expected), (path, classes, key)
            if rows is None:
                assert not any(torch.equal(state["classifier.4.weight"], source["classifier.4.weight"][r])
                               for r in ([0, 1], [0, 1, 2]))
            assert torch.equal(state["classifier.2.weight"], source["classifier.2.weight"]), (path, classes)
            assert any("trained on other classes" in m or "does not match" in m for m in messages) == (rows is None)
            assert any("rows of these classes" in m for m in messages) == (rows not in (None, [0, 1, 2])), messages
    clothes = make_image_folder(tmp_path / "clothes", classes=3)
    for n, name in enumerate(["shirt", "shoe", "bag"]):
        (clothes / f"class_{n}").rename(clothes / name)
    run_cli("train", "--model", "lenet5", "--data", f"folder:{clothes}", "--image-size", "20x20", "--epochs", "1",
            "--weights", tmp_path / "runs" / "source", "--out", tmp_path / "runs", "--name", "clothes", "--no-report")
    log = (tmp_path / "runs" / "clothes" / "train.log").read_text()
    assert "the output layer was trained on other classes (class_0, class_1, class_2; these: bag, shirt, shoe)" in log
    shutil.rmtree(tmp_path / "digits" / "class_1")
    run_cli("train", "--model", "lenet5", "--data", f"folder:{tmp_path / 'digits'}", "--image-size", "20x20",
            "--epochs", "1", "--weights", tmp_path / "runs" / "source", "--out", tmp_path / "runs", "--name", "two",
            "--no-report")
    log = (tmp_path / "runs" / "two" / "train.log").read_text()
    assert ("the output layer was trained on 3 classes (class_0, class_1, class_2); "
            "the rows of these classes are kept (class_0, class_2)") in log
    assert "loaded 10 of 10 tensors" in log


def test_weights_torchvision_vgg_names_load_into_transfer_base(tmp_path):
    # a state dict with torchvision's VGG-16 key names and shapes (1000-class classifier)
    # (the base's tensors do not depend on the input size; 32x32 keeps the file small)
    source = create_model("vgg16", 1000, 3, (32, 32))
    path = tmp_path / "vgg16-torchvision.pth"
    torch.save(source.state_dict(), path)
    target = create_model("vgg16-transfer", 17, 3, (32, 32))
    messages = []
    load_weights(target, path, log=messages.append)
    torch.testing.assert_close(target.features[0].weight, source.features[0].weight)
    assert any("re-initialised" in m for m in messages)


def test_weights_refuse_code(tmp_path):
    path = tmp_path / "evil.pt"

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, path)
    with pytest.raises(CnnlabError, match="not a readable PyTorch checkpoint"):
        load_weights(create_model("lenet5"), path, log=lambda m: None)


@pytest.mark.parametrize("content", [
    b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",  # IndexError
    b"hello\n",  # KeyError
    bytes(range(256)) * 4,
])
def test_a_file_of_other_bytes_is_not_a_checkpoint_in_one_line(tmp_path, content):
    """torch's weights-only unpickler lets IndexError, KeyError and the like out on such bytes."""
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(CnnlabError, match=r"weights.pt: not a readable PyTorch checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize("name", ALL_MODELS)
def test_folding_batchnorm_keeps_the_function(name):
    """Every model, its BatchNorms given non-trivial statistics: the folded copy computes the
    same outputs, holds no BatchNorm right after a conv or dense layer, and leaves the original
    as it was."""
    from cnnlab.models.fusion import fold_batchnorm, foldable_pairs

    model, _ = build(name)
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            shape = module.running_mean.shape
            module.running_mean.copy_(torch.randn(shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(shape, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(shape, generator=generator) * 0.1)
    model.eval()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    folded = fold_batchnorm(model)
    x = torch.randn(2, model.in_channels, *model.input_size, generator=generator)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    for sequence in folded.modules():
        if isinstance(sequence, torch.nn.Sequential):
            pairs = zip(list(sequence)[:-1], list(sequence)[1:], strict=True)
            assert not any(isinstance(a, torch.nn.Conv2d | torch.nn.Linear)
                           and isinstance(b, torch.nn.modules.batchnorm._BatchNorm) for a, b in pairs)
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())
    # what per-epoch validation asks before it copies: whether folding changes anything
    assert not foldable_pairs(folded)
    assert bool(foldable_pairs(model)) == (repr(folded) != repr(model))


def test_patch_whitening_decorrelates_the_patches_it_was_fitted_to():
    torch.manual_seed(0)
    noise = torch.randn(200, 3, 12, 12)
    # neighbouring pixels and the channels strongly correlated, as in photos
    images = noise + 0.9 * noise.roll(1, 3) + 0.6 * noise.roll(1, 2) + 0.5 * noise[:, :1]
    layer = PatchWhitening(3, 2)
    layer.fit(images)
    out = torch.nn.functional.conv2d(images, layer.weight)
    assert out.shape[1] == 24
    directions = out[:, :12].permute(0, 2, 3, 1).reshape(-1, 12)
    torch.testing.assert_close(directions.T @ directions / len(directions), torch.eye(12), atol=2e-3, rtol=0)
    torch.testing.assert_close(out[:, 12:], -out[:, :12])


def test_whitening_filters_are_fitted_never_trained():
    model = create_model("airbench", widths=[8, 8, 8])
    layer = model.features[0]
    assert isinstance(layer, PatchWhitening) and "features.0.weight" in model.state_dict()
    assert all(param is not layer.weight for param in model.parameters())
    model.freeze_features(True)
    model.freeze_features(False)
    assert not layer.weight.requires_grad
    before = layer.weight.clone()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, weight_decay=0.1)
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    optimizer.step()
    torch.testing.assert_close(layer.weight, before)


def test_airbench_fixed_batchnorm_scale_never_trains():
    model = create_model("airbench", widths=[8, 8, 8], bn_scale=False)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 6 and all(all(p is not m.weight for p in model.parameters()) for m in norms)
    assert set(model.state_dict()) == set(create_model("airbench", widths=[8, 8, 8]).state_dict())
    model.freeze_features(True)
    model.freeze_features(False)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0, weight_decay=0.1)
    model(torch.randn(4, 3, 32, 32)).sum().backward()
    optimizer.step()
    assert all((m.weight == 1).all() for m in norms)


def test_airbench_identity_init_passes_the_first_channels_through():
    model = create_model("airbench", widths=[8, 16, 16], identity_init=True)
    convs = [m for m in model.features if isinstance(m, PatchMatmulConv2d)]
    assert len(convs) == 6
    for conv in convs:
        x = torch.randn(2, conv.in_channels, 6, 6)
        kept = min(conv.in_channels, conv.out_channels)
        torch.testing.assert_close(conv(x)[:, :kept], x[:, :kept])
    plain = [m for m in create_model("airbench", widths=[8, 16, 16]).features if isinstance(m, PatchMatmulConv2d)]
    x = torch.randn(2, 8, 6, 6)
    assert not torch.allclose(plain[1](x)[:, :8], x)


@pytest.mark.parametrize("widths", [[8, 8], [8, 0, 8], [8.5, 8, 8]])
def test_airbench_widths_are_checked(widths):
    with pytest.raises(CnnlabError, match="widths"):
        create_model("airbench", widths=widths)
