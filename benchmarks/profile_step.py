"""Where the time of cnnlab's training step goes: torch.profiler over a few steps of
Trainer.train_epoch on synthetic data, operators sorted by their own CPU time.

    python benchmarks/profile_step.py --model alexnet-bn --steps 3
    python benchmarks/profile_step.py --model simple-cnn --precision bf16 --by-shape
"""

from __future__ import annotations

import argparse
import sys
import tempfile

import torch
from throughput import Case, CnnlabMode, exit_on_refused_input

from cnnlab import launcher
from cnnlab.runs import RunDirectory
from cnnlab.runtime import Runtime, cpu_text


def main() -> None:
    launcher.reexec_with_fast_allocator(sys.argv[1:], program=(__file__,))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="alexnet-bn", help="NAME or NAME@SIZE")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=25)
    parser.add_argument("--by-shape", action="store_true", help="one row per operator and input shapes")
    args = parser.parse_args()
    runtime = Runtime.create("cpu", args.precision)
    case = Case.parse(args.model, args.batch_size)
    with tempfile.TemporaryDirectory() as tmp:
        mode = CnnlabMode(case, runtime, args.steps, RunDirectory(tmp, quiet=True))
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                    record_shapes=args.by_shape) as profile:
            rate = mode.measure()
    print(f"{case.label}, batch {case.batch}, {runtime.precision}, {runtime.threads} threads, "
          f"CPU {cpu_text()}: {rate:.1f} img/s under the profiler")
    table = profile.key_averages(group_by_input_shape=args.by_shape)
    print(table.table(sort_by="self_cpu_time_total", row_limit=args.rows, max_name_column_width=40))


if __name__ == "__main__":
    exit_on_refused_input(main)
