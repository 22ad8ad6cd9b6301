"""The training step's planned memory per device, from XLA's analysis of the compiled call.

Builds each run as `train.py` does (`trainer.Run`: data, budget, compacted schedule, model,
engine) on synthetic data in Human3.6M's proportions, compiles the library's own training call
for shapes only (no state is allocated) and prints its footprint, as the trainer does before
its first step. On a CPU the figures are XLA:CPU's buffer assignment: an estimate of a GPU's
until measured there (`--device_memory_gib` makes it plan as for a device of that size).

  python benchmarks/memory_plan.py --configs ab243,common243 --dtypes float32,bfloat16
  config=ab243 dtype=float32 slots=10 batch=1024 planned_gib=... arguments_gib=... temporaries_gib=... compile_s=...
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import jax  # noqa: E402

from posejax import trainer  # noqa: E402
from posejax.config import run_config  # noqa: E402
from posejax.data import synthetic  # noqa: E402
from posejax.training import log_point, memory_plan


def _value(text: str):
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def plan(name: str, dtype: str, data: str, device_memory_gib: float, overrides: list[str]) -> str:
  config = importlib.import_module(f"configs.{name}").get_config()
  config.data.dir, config.data.keypoints = data, "synthetic"
  config.model.compute_dtype = dtype
  config.train.device_memory_gib = device_memory_gib
  config.eval.validate = False
  config.update_from_flattened_dict({k: _value(v) for k, v in (item.split("=", 1) for item in overrides)})
  run = trainer.Run(run_config.from_config(config), tempfile.mkdtemp())
  rng = jax.random.key(0)
  loop = trainer.Loop(run, rng, log_point.Timers())
  state = jax.eval_shape(run.init_fn)  # shapes only: nothing of the 15 models' state is allocated
  start = time.perf_counter()
  result = loop.plan(state, run.fresh_accumulator())
  fp = result.footprint
  gib = lambda b: f"{b / memory_plan.GIB:.2f}"
  return (f"config={name} dtype={dtype} slots={run.slot_layout.slots} batch={run.batch_size} "
          f"useful={run.useful:.4f} planned_gib={gib(fp.total)} arguments_gib={gib(fp.arguments)} "
          f"temporaries_gib={gib(fp.temporaries)} compile_s={time.perf_counter() - start:.1f} "
          f"device={jax.devices()[0].platform}")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--configs", default="ab243,common243")
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--data", default=None, help="synthetic data in Human3.6M's proportions (default: "
                      "generated at --scale in a scratch folder)")
  parser.add_argument("--scale", type=float, default=0.02, help="--scale of the generated data (the step's "
                      "temporaries do not depend on it; the resident tables do)")
  parser.add_argument("--device_memory_gib", type=float, default=0.0)
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="config overrides, e.g. model.channels=256")
  args = parser.parse_args()
  data = args.data or os.path.join(tempfile.mkdtemp(prefix="memory_plan_"), "data")
  if not args.data:
    synthetic.generate(data, proportions="h36m", scale=args.scale)
  for name in args.configs.split(","):
    for dtype in args.dtypes.split(","):
      print(plan(name, dtype, data, args.device_memory_gib, args.set), flush=True)


if __name__ == "__main__":
  main()
