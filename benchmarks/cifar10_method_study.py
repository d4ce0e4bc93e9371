"""How far the known fast-training methods take the CIFAR-10 network a 2-core CPU can train in
30 minutes: a stand-alone reference implementation of the training methods of Jordan's airbench
("94% on CIFAR-10 in 3.29 Seconds on a Single GPU", arXiv:2404.00498, 2024) and of its later
Muon variant, some of which cnnlab's trainer does not have (lookahead, airbench's parameter
groups and their units, per-group schedules; its Muon variant and alternating flips it now
has: ``optimizer.muon_renormalise``, ``hflip:alternate``), on
airbench's network with the whitening layer and test views cnnlab does have
(PatchWhitening, shifted_views). It answers "what would building these methods into cnnlab
buy" before building them (docs/results.md); it is not a second trainer for users.

Each run is one argument, "NAME key=value ..." (defaults: cnnlab's recipes/cifar10-airbench.yaml;
``preset=airbench`` or ``preset=muon`` first sets that method's own choices), trained one
after another on the data held on the device:

    python benchmarks/cifar10_method_study.py /tmp/data/cifar10 --device cuda \\
        recipe "airbench preset=airbench batch=512" "muon preset=muon"

DATA is a folder with train/<class>/*.jpg and test/<class>/*.jpg (the CIFAR-10 JPEG copy).
Each run prints one JSON line: test accuracy with no, flip and six test views, seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from cnnlab.config import ScheduleConfig
from cnnlab.data import load_dataset
from cnnlab.data.augment import Augment, Augmenter, shifted_views
from cnnlab.models.layers import PatchWhitening
from cnnlab.runtime import device_text
from cnnlab.training.optim import Muon
from cnnlab.training.schedules import LRSchedule

DEFAULTS = dict(
    widths=[32, 128, 128], act="relu", bn_scale=True, bn_eps=1e-5, bn_momentum=0.1, dirac=False,
    head_bias=True, logit_scale=1.0, head_norm=False, epochs=15, batch=128, optimizer="sgd",
    lr=0.1, momentum=0.9, weight_decay=5e-4, decoupled=False, bias_lr=1.0, head_lr=0.0,
    muon_momentum=0.6, schedule="cosine", warmup=1.0, shape=[0.2, 0.23, 0.07], label_smoothing=0.1,
    flip="random", shift=4, lookahead=False, lookahead_from=3, whiten_bias_epochs=1000,
    seed=0)
"""cnnlab's recipe. decoupled: airbench's units (lr per 1024 images, summed loss, weight decay
independent of lr); shape: the triangle schedule's start, peak position and end."""

PRESETS = {
    # airbench94's training: lookahead, alternating flips, BatchNorm without a trained scale,
    # identity-initialised convolutions, GELU, a 1/9 logit scale, BN biases at 64x the lr
    "airbench": dict(act="gelu", bn_scale=False, bn_eps=1e-12, bn_momentum=0.4, dirac=True,
                     head_bias=False, logit_scale=1 / 9, batch=1024, decoupled=True, lr=11.5,
                     momentum=0.85, weight_decay=0.0153, bias_lr=64.0, schedule="triangle",
                     label_smoothing=0.2, flip="alternate", shift=2, lookahead=True,
                     whiten_bias_epochs=3),
    # airbench94_muon's: Muon on the convolutions, plain SGD on biases and the head
    "muon": dict(act="gelu", bn_scale=False, bn_eps=1e-12, bn_momentum=0.4, dirac=True,
                 head_bias=False, head_norm=True, batch=500, optimizer="muon", lr=0.12,
                 muon_momentum=0.6, bias_lr=0.053, head_lr=0.67, weight_decay=2e-6,
                 momentum=0.85, decoupled=True, schedule="linear", label_smoothing=0.2,
                 flip="alternate", shift=2, whiten_bias_epochs=3),
}


def load(data: Path, device: torch.device):
    """Train and test images through cnnlab's folder reader and decode cache, standardised with
    the training set's channel statistics."""
    dataset = load_dataset(f"folder:{data}", image_size=(32, 32), val_split=0.0, progress=False)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in dataset.channel_stats("train"))

    def tensors(split):
        pixels = torch.from_numpy(split.pixels()).permute(0, 3, 1, 2).float() / 255
        return ((pixels - mean) / std).to(device), torch.from_numpy(split.labels).long().to(device)

    return (*tensors(dataset.splits["train"]), *tensors(dataset.splits["test"]))


class Net(nn.Module):
    """airbench: whitening, three blocks (conv, pool, BN, act, conv, BN, act), global max, dense."""

    def __init__(self, s: dict, classes: int):
        super().__init__()
        activation = nn.GELU if s["act"] == "gelu" else nn.ReLU
        self.whiten = PatchWhitening(3, 2)
        layers, channels = [activation()], 2 * 3 * 2 * 2
        for width in s["widths"]:
            convs = [nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.Conv2d(width, width, 3, padding=1, bias=False)]
            if s["dirac"]:  # an implicit residual: the first channels start as the identity
                for conv in convs:
                    nn.init.dirac_(conv.weight.data[:conv.weight.size(1)])
            norms = [nn.BatchNorm2d(width, eps=s["bn_eps"], momentum=s["bn_momentum"]) for _ in range(2)]
            for norm in norms:
                norm.weight.requires_grad = s["bn_scale"]
            layers += [convs[0], nn.MaxPool2d(2), norms[0], activation(), convs[1], norms[1], activation()]
            channels = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(channels, classes, bias=s["head_bias"])
        self.scale = s["logit_scale"] / (channels if s["head_norm"] else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.whiten(x)).amax((2, 3))) * self.scale


def optimizers(model: Net, s: dict) -> list[torch.optim.Optimizer]:
    """SGD groups: the whitening bias (its own schedule), the 1-D BatchNorm parameters (at
    bias_lr), the rest; under Muon the filters go to Muon and the head has its own lr."""
    batch = s["batch"]
    norms = [p for n, p in model.named_parameters() if n.startswith("body") and p.ndim == 1 and p.requires_grad]
    head = list(model.head.parameters())
    if s["decoupled"]:  # airbench's units: the step independent of momentum, decay of lr
        kilostep = 1 if s["optimizer"] == "muon" else 1024 * (1 + 1 / (1 - s["momentum"]))
        lr, decay = s["lr"] / kilostep, s["weight_decay"] * batch / kilostep

        def group(params, rate):
            return dict(params=params, lr=rate, weight_decay=decay / rate)
    else:
        lr = s["lr"]

        def group(params, rate):
            return dict(params=params, lr=rate, weight_decay=s["weight_decay"])
    if s["optimizer"] == "muon":
        filters = [p for n, p in model.named_parameters() if n.startswith("body") and p.ndim == 4]
        head_lr = s["head_lr"] or s["bias_lr"]
        groups = [group([model.whiten.bias], s["bias_lr"]), group(norms, s["bias_lr"]), group(head, head_lr)]
        if s["head_norm"]:
            with torch.no_grad():
                model.head.weight.mul_(1 / model.head.weight.std())
        # airbench94_muon's Muon: three Newton-Schulz steps on renormalised weights, no decay
        muon = Muon([dict(params=filters, muon=True)], lr=s["lr"], muon_momentum=s["muon_momentum"],
                    ns_steps=3, renormalise=True)
        return [torch.optim.SGD(groups, momentum=s["momentum"], nesterov=True), muon]
    groups = [group([model.whiten.bias], lr), group(norms, lr * s["bias_lr"]), group(head, lr)]
    return [torch.optim.SGD(groups, momentum=s["momentum"], nesterov=True)]


def lr_factors(s: dict, steps_per_epoch: int) -> Callable[[int], float]:
    """The learning rate's multiplier at each step: cnnlab's cosine with warm-up, a linear decay
    to zero, or airbench's triangle (start, peak position, end)."""
    total = steps_per_epoch * s["epochs"]
    if s["schedule"] == "cosine":
        cosine = LRSchedule(ScheduleConfig(name="cosine", warmup_epochs=s["warmup"]), 1.0, steps_per_epoch, s["epochs"])
        return cosine.lr_at
    if s["schedule"] == "linear":
        return lambda step: 1 - step / total
    start, peak, end = s["shape"]
    top = peak * total
    return lambda step: start + (1 - start) * step / top if step < top else 1 + (end - 1) * (step - top) / (total - top)


@torch.no_grad()
def accuracy(model: Net, images: torch.Tensor, labels: torch.Tensor, views: str) -> float:
    model.eval()
    correct = 0
    for x, y in zip(images.split(2000), labels.split(2000), strict=True):
        batch = [x] if views == "none" else [x, x.flip(3)]
        if views == "six":
            batch += [shifted for view in batch[:2] for shifted in shifted_views(view)]
        correct += (sum(model(v).softmax(1) for v in batch).argmax(1) == y).sum().item()
    model.train()
    return correct / len(images)


def train(s: dict, train_x, train_y) -> Net:
    torch.manual_seed(s["seed"])
    device = train_x.device
    model = Net(s, int(train_y.max()) + 1).to(device).to(memory_format=torch.channels_last)
    sample = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(s["seed"]))[:5000]
    model.whiten.fit(train_x[sample.to(device)])
    opts = optimizers(model, s)
    base = [[group["lr"] for group in opt.param_groups] for opt in opts]
    steps_per_epoch = len(train_x) // s["batch"]
    total = steps_per_epoch * s["epochs"]
    factors = lr_factors(s, steps_per_epoch)
    shifter = Augmenter(Augment(pad_crop=s["shift"]), (32, 32), None, torch.Generator().manual_seed(s["seed"]))
    tracked = [v for v in model.state_dict().values() if v.dtype.is_floating_point]
    lookahead = None
    first_flips = torch.rand(len(train_x), device=device) < 0.5
    step = 0
    for epoch in range(s["epochs"]):
        # alternating: each image mirrored in every other epoch, starting from a random half
        flips = first_flips ^ bool(epoch % 2) if s["flip"] == "alternate" else torch.rand(len(train_x), device=device) < 0.5
        order = torch.randperm(len(train_x), device=device)
        for index in order[: steps_per_epoch * s["batch"]].split(s["batch"]):
            x = torch.where(flips[index][:, None, None, None], train_x[index].flip(3), train_x[index])
            x = shifter(x) if s["shift"] else x
            factor = factors(step)
            bias_factor = factor
            if s["whiten_bias_epochs"] < s["epochs"]:  # Muon's fades to zero, SGD's stops
                bias_steps = s["whiten_bias_epochs"] * steps_per_epoch
                bias_factor = max(0.0, 1 - step / bias_steps) if s["optimizer"] == "muon" else factor * (step < bias_steps)
            for opt, rates in zip(opts, base, strict=True):
                for group, rate in zip(opt.param_groups, rates, strict=True):
                    group["lr"] = rate * (bias_factor if group is opts[0].param_groups[0] else factor)
            logits = model(x.contiguous(memory_format=torch.channels_last))
            loss = F.cross_entropy(logits, train_y[index], label_smoothing=s["label_smoothing"],
                                   reduction="sum" if s["decoupled"] else "mean")
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in opts:
                opt.step()
            step += 1
            with torch.no_grad():
                if s["lookahead"] and epoch >= s["lookahead_from"] and step % 5 == 0:
                    if lookahead is None:
                        lookahead = [v.clone() for v in tracked]
                    rho = 0.95 ** 5 * (step / total) ** 3  # average harder as training ends
                    for slow, value in zip(lookahead, tracked, strict=True):
                        slow.lerp_(value, 1 - rho)
                        value.copy_(slow)
        if lookahead is not None:  # each epoch ends on the slow weights
            with torch.no_grad():
                for kept, value in zip(lookahead, tracked, strict=True):
                    value.copy_(kept)
    return model


def settings(tokens: list[str]) -> dict:
    s = dict(DEFAULTS)
    for token in tokens:
        key, _, value = token.partition("=")
        if key == "preset" and value in PRESETS:
            s.update(PRESETS[value])
        elif key in DEFAULTS and isinstance(DEFAULTS[key], str):
            s[key] = value
        elif key in DEFAULTS:
            try:
                s[key] = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(f"{token}: {key} takes a number, true/false or a list") from None
        else:
            raise ValueError(f"{token}: unknown setting; valid: preset ({', '.join(PRESETS)}), {', '.join(DEFAULTS)}")
    return s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path)
    parser.add_argument("runs", nargs="+", help='one run each: "NAME [key=value ...]"')
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    try:  # every run's settings checked before the data loads
        runs = [(run.split()[0], settings(run.split()[1:])) for run in args.runs if run.split()]
    except ValueError as error:
        parser.error(str(error))
    if len(runs) < len(args.runs):
        parser.error('a run is "NAME [key=value ...]"; one was empty')
    if not all((args.data / split).is_dir() for split in ("train", "test")):
        parser.error(f"{args.data}: needs train/<class>/ and test/<class>/ image folders")
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {device} ({device_text(device)})", flush=True)
    train_x, train_y, test_x, test_y = load(args.data, device)
    for name, s in runs:
        started = time.perf_counter()
        model = train(s, train_x, train_y)
        seconds = time.perf_counter() - started
        result = {"run": name, "seconds": round(seconds, 1),
                  **{views: accuracy(model, test_x, test_y, views) for views in ("none", "flip", "six")},
                  "settings": {k: v for k, v in s.items() if DEFAULTS[k] != v}}
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
