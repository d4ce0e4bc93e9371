"""The optimizers: Muon's update, its parameter split and its fallbacks against torch's own."""

from __future__ import annotations

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from cnnlab.config import OptimizerConfig
from cnnlab.errors import ConfigError
from cnnlab.models import MODELS, create_model
from cnnlab.training.optim import (
    OPTIMIZERS,
    Muon,
    build_optimizer,
    muon_weights,
    orthogonalised,
    param_groups,
    state_tensors_per_weight,
)

MUON = OptimizerConfig(name="muon", lr=0.02, fallback_lr=0.001)


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 40), cols=st.integers(1, 40), seed=st.integers(0, 2**16))
@example(rows=1, cols=1, seed=273)  # a norm of 1e-4, where the 1e-7 guard moves the share by 1e-3
def test_orthogonalised_pulls_singular_values_towards_one(rows, cols, seed):
    # the iteration keeps the singular vectors and maps each singular value (as a share of
    # the Frobenius norm, guarded against 0 as orthogonalised guards it) through the same
    # quintic five times: every one not vanishingly small lands in about [0.68, 1.2] (Jordan
    # et al.: not exactly on 1, and it need not)
    matrix = torch.randn(rows, cols, generator=torch.Generator().manual_seed(seed)) * 10 ** (seed % 7 - 3)
    shares = torch.linalg.svdvals(matrix.double()) / (matrix.double().norm() + 1e-7)
    expected = shares
    for _ in range(5):
        expected = 3.4445 * expected - 4.7750 * expected**3 + 2.0315 * expected**5
    values = torch.linalg.svdvals(orthogonalised(matrix, 5).double())
    torch.testing.assert_close(values, expected.sort(descending=True).values, atol=2e-4, rtol=1e-3)
    assert ((expected > 0.68) & (expected < 1.21))[shares > 0.003].all(), expected


@pytest.mark.parametrize("name", MODELS.names())
def test_muon_takes_the_hidden_weights_of_every_model(name):
    model = create_model(name)
    chosen = muon_weights(model)
    matrices = [p for p in model.parameters() if p.ndim >= 2]
    assert chosen and chosen <= {id(p) for p in matrices}
    assert id(model.head.weight) not in chosen
    assert all(id(p) not in chosen for p in model.parameters() if p.ndim < 2)


def test_muon_skips_the_first_layer_unless_it_is_fixed():
    lenet = create_model("lenet5")
    first_conv = next(m for m in lenet.modules() if isinstance(m, nn.Conv2d))
    assert id(first_conv.weight) not in muon_weights(lenet)
    # airbench's first layer is the fixed whitening: its first trained convolution is Muon's
    airbench = create_model("airbench", widths=[8, 16, 16])
    assert id(airbench.features[2].weight) in muon_weights(airbench)


def test_muon_groups_hold_every_parameter_once_with_the_fallback_lr():
    model = create_model("lenet5")
    groups = param_groups(model, MUON, base_lr_scale=0.1)
    held = [id(p) for group in groups for p in group["params"]]
    assert sorted(held) == sorted(id(p) for p in model.parameters())
    for group in groups:
        base = 0.1 if any(p is q for p in group["params"] for q in model.features.parameters()) else 1.0
        expected = base * (1.0 if group["muon"] else MUON.fallback_lr / MUON.lr)
        assert group["lr_scale"] == pytest.approx(expected)
    assert {group["muon"] for group in groups} == {True, False}
    assert all("muon" not in group for group in param_groups(model, OptimizerConfig(name="sgd")))


def test_muon_update_is_the_orthogonalised_nesterov_momentum():
    torch.manual_seed(0)
    weight = nn.Parameter(torch.randn(6, 4, 3, 3))
    start = weight.detach().clone()
    optimizer = Muon([{"params": [weight], "muon": True}], lr=0.1, muon_momentum=0.9, weight_decay=0.01)
    buffer = torch.zeros_like(weight)
    for step in range(3):
        weight.grad = torch.randn_like(weight)
        buffer = buffer.lerp(weight.grad, 0.1)
        update = orthogonalised(weight.grad.lerp(buffer, 0.9).reshape(6, -1), 5).view_as(weight)
        start = start * (1 - 0.1 * 0.01) - 0.1 * update  # 6 x 36: rows < cols, no extra scale
        optimizer.step()
        torch.testing.assert_close(weight.detach(), start, msg=f"step {step}")


@pytest.mark.parametrize("fallback, reference", [
    ("sgd", lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01)),
    ("adamw", lambda params: torch.optim.AdamW(params, lr=0.05, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01)),
])
def test_fallback_steps_equal_torchs_optimizer(fallback, reference):
    torch.manual_seed(0)
    ours_model, torch_model = nn.Linear(5, 3), nn.Linear(5, 3)
    torch_model.load_state_dict(ours_model.state_dict())
    ours = Muon(ours_model.parameters(), lr=0.05, weight_decay=0.01, fallback=fallback,
                momentum=0.8, nesterov=True, betas=(0.8, 0.99), eps=1e-7)
    theirs = reference(torch_model.parameters())
    for _ in range(4):
        x = torch.randn(8, 5)
        for model, optimizer in ((ours_model, ours), (torch_model, theirs)):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
    for a, b in zip(ours_model.parameters(), torch_model.parameters(), strict=True):
        torch.testing.assert_close(a, b)


def test_muon_state_round_trips():
    model = create_model("lenet5")
    optimizer = build_optimizer(MUON, param_groups(model, MUON), torch.device("cpu"))
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    optimizer.step()
    again = build_optimizer(MUON, param_groups(model, MUON), torch.device("cpu"))
    again.load_state_dict(optimizer.state_dict())
    assert [g["muon"] for g in again.param_groups] == [g["muon"] for g in optimizer.param_groups]
    assert len(again.state) == len(optimizer.state) == sum(1 for _ in model.parameters())


@pytest.mark.parametrize("key, value, needle", [
    ("fallback", "lamb", "optimizer.fallback: must be one of adamw, sgd; got 'lamb'"),
    ("fallback_lr", 0.0, "optimizer.fallback_lr: must be positive"),
    ("muon_momentum", 1.0, "optimizer.muon_momentum: must be at least 0 and below 1"),
    ("ns_steps", 0, "optimizer.ns_steps: must be 1 to 20"),
])
def test_bad_muon_settings_name_the_option(key, value, needle):
    cfg = OptimizerConfig(name="muon", lr=0.02, **{key: value})
    with pytest.raises(ConfigError, match=needle):
        build_optimizer(cfg, [nn.Parameter(torch.zeros(1))], torch.device("cpu"))


def test_renormalised_muon_holds_the_norm_and_moves_by_lr():
    # airbench94_muon's variant: each update starts from the weight at norm sqrt(rows), no decay
    torch.manual_seed(0)
    weight = nn.Parameter(torch.randn(6, 4, 3, 3) * 5)
    optimizer = Muon([{"params": [weight], "muon": True}], lr=0.1, muon_momentum=0.6,
                     weight_decay=0.5, renormalise=True)
    buffer = torch.zeros_like(weight)
    for step in range(3):
        weight.grad = torch.randn_like(weight)
        buffer = buffer.lerp(weight.grad, 0.4)
        update = orthogonalised(weight.grad.lerp(buffer, 0.6).reshape(6, -1), 5).view_as(weight)
        expected = weight.detach() * 6 ** 0.5 / weight.detach().norm() - 0.1 * update
        optimizer.step()
        torch.testing.assert_close(weight.detach(), expected, msg=f"step {step}")


def test_renormalise_comes_from_the_config_and_leaves_the_fallback_alone():
    cfg = OptimizerConfig(name="muon", lr=0.1, muon_renormalise=True, fallback="sgd", fallback_lr=0.1,
                          weight_decay=0.5, momentum=0.0)
    filters, bias = nn.Parameter(torch.ones(4, 2, 3, 3)), nn.Parameter(torch.ones(4))
    optimizer = build_optimizer(cfg, [{"params": [filters], "muon": True}, {"params": [bias]}],
                                torch.device("cpu"))
    filters.grad, bias.grad = torch.zeros_like(filters), torch.zeros_like(bias)
    optimizer.step()
    assert filters.detach().norm().item() == pytest.approx(2.0)  # sqrt(4 rows), not decayed
    torch.testing.assert_close(bias.detach(), torch.full((4,), 1 - 0.1 * 0.5))  # SGD's L2 decay


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop", "muon"])
@pytest.mark.parametrize("key, value, needle", [
    ("weight_decay", -1.0, r"optimizer.weight_decay: must be 0 or more; got -1.0"),
    ("momentum", 1.5, r"optimizer.momentum: must be at least 0 and below 1; got 1.5"),
    ("momentum", -0.1, r"optimizer.momentum: must be at least 0 and below 1; got -0.1"),
    ("betas", [0.9, 1.5], r"optimizer.betas: two numbers, each at least 0 and below 1; got \[0.9, 1.5\]"),
    ("betas", [0.9], r"optimizer.betas: two numbers, each at least 0 and below 1; got \[0.9\]"),
    ("eps", 0.0, r"optimizer.eps: must be positive; got 0.0"),
])
def test_bad_settings_of_any_optimizer_name_the_option(name, key, value, needle):
    """torch's own checks raise a bare ValueError, and only for the optimizer that uses the
    setting; cnnlab names the option whichever optimizer is chosen."""
    cfg = OptimizerConfig(name=name, lr=0.02, **{key: value})
    with pytest.raises(ConfigError, match=needle):
        build_optimizer(cfg, [nn.Parameter(torch.zeros(1))], torch.device("cpu"))


@pytest.mark.parametrize("cfg, needle", [
    (OptimizerConfig(name="adam", momentum=0.5),
     r"^optimizer.momentum: adam does not use it \(0.5\); it is sgd's, and muon's with fallback sgd$"),
    (OptimizerConfig(name="rmsprop", momentum=0.0),
     r"^optimizer.momentum: rmsprop does not use it \(0.0\); it is sgd's, and muon's with fallback sgd$"),
    (OptimizerConfig(name="sgd", betas=[0.8, 0.99]),
     r"^optimizer.betas: sgd does not use it \(\[0.8, 0.99\]\); it is adam's, adamw's, and muon's with fallback adamw$"),
    (OptimizerConfig(name="adamw", nesterov=True), r"^optimizer.nesterov: adamw does not use it \(True\)"),
    (OptimizerConfig(name="sgd", ns_steps=3), r"^optimizer.ns_steps: sgd does not use it \(3\); it is muon's$"),
    (OptimizerConfig(name="muon", momentum=0.5), r"^optimizer.momentum: muon with fallback adamw does not use it \(0.5\)"),
    (OptimizerConfig(name="muon", fallback="sgd", betas=[0.8, 0.9]),
     r"^optimizer.betas: muon with fallback sgd does not use it"),
])
def test_a_setting_the_optimizer_does_not_use_is_refused(cfg, needle):
    """--optimizer adam --momentum 0.5 trained as if --momentum were not there: torch's Adam
    has no momentum (Keras' Adam refuses one with a TypeError)."""
    with pytest.raises(ConfigError, match=needle):
        build_optimizer(cfg, [nn.Parameter(torch.zeros(1))], torch.device("cpu"))


@pytest.mark.parametrize("cfg", [
    OptimizerConfig(name="sgd", momentum=0.5, nesterov=True), OptimizerConfig(name="adam", betas=[0.8, 0.9], eps=1e-8),
    OptimizerConfig(name="rmsprop", eps=1e-6), OptimizerConfig(name="muon", fallback="sgd", momentum=0.85, ns_steps=3),
    OptimizerConfig(name="adam", momentum=0.9),  # the default, written out as recipes do
])
def test_the_settings_each_optimizer_uses_are_taken(cfg):
    build_optimizer(cfg, [nn.Parameter(torch.zeros(1))], torch.device("cpu"))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_the_state_an_optimizer_is_counted_with_is_what_it_keeps(name):
    """The room a run's checkpoints need counts the optimizer's state per weight: at most what
    each keeps after a step (a lower bound, so a run that fits is never refused)."""
    model = create_model("lenet5", 10, 1, (28, 28))
    cfg = MUON if name == "muon" else OptimizerConfig(name=name, lr=0.01)
    optimizer = build_optimizer(cfg, param_groups(model, cfg), torch.device("cpu"))
    model(torch.randn(2, 1, 28, 28)).sum().backward()
    optimizer.step()
    kept = [sum(isinstance(value, torch.Tensor) and value.shape == parameter.shape
                for value in optimizer.state[parameter].values()) for parameter in model.parameters()]
    assert 1 <= state_tensors_per_weight(cfg) <= min(kept)
