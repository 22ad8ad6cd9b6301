"""Runs a few log segments of a tiny action-based run with the library's own loop; prints JSON.

  python tests/engine_worker.py DATA_DIR [--processes N --process_id I --port P]

Used by the multi-device tests (the device count comes from XLA_FLAGS, set by the caller):
the per-segment loss sums and the final parameters must not depend on how the devices are
spread over processes.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("data_dir")
  parser.add_argument("--processes", type=int, default=1)
  parser.add_argument("--process_id", type=int, default=0)
  parser.add_argument("--port", type=int, default=0)
  parser.add_argument("--devices", type=int, default=0, help="use only the first N devices (1 process)")
  parser.add_argument("--input", default="device")
  args = parser.parse_args()
  if args.processes > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(f"localhost:{args.port}", args.processes, args.process_id)

  from configs import default
  from posejax.training import log_point, slices
  from posejax.common import sharding
  from posejax import trainer
  from posejax.config import run_config

  config = default.get_config()
  config.mode = "action_based"
  config.actions = "Eating,Sitting,Walking"
  config.data.dir = args.data_dir
  config.data.keypoints = "synthetic"
  config.model.filter_widths = (3, 3)
  config.model.channels = 16
  config.train.epochs = 2
  config.train.unit_epochs = 1
  config.train.batch_size = 64
  config.train.logs_per_epoch = 2
  config.train.steps_per_call = 3
  config.train.input = args.input
  config.train.progress = False
  if args.devices:
    devices = jax.devices()[:args.devices]
    make_layout = sharding.make_layout
    sharding.make_layout = lambda *a, **k: make_layout(*a, devices=devices, **k)
  run = trainer.Run(run_config.from_config(config), workdir="")
  layout = run.layout
  state = jax.jit(run.init_fn, out_shardings=layout.model_sharding)()
  acc = trainer.engine.fresh_accumulator(layout)
  rng = jax.jit(lambda: jax.random.key(7), out_shardings=layout.replicated)()
  loop = trainer.Loop(run, rng, log_point.Timers())
  positions, step, losses = np.zeros(layout.padded_models, np.int64), 0, []

  class NoStop:
    requested = False

  for target in run.targets[:2]:
    target = run.padded(target)
    rows = slices.segment_rows(positions, target, run.slot_layout)
    state, acc, done = loop.run_rows(state, acc, run.engine.schedule_inputs(rows, positions), step, NoStop(), "")
    step, positions = step + done, target
    sums = sharding.fetch(acc)
    losses.append((sums["loss_sum"][:layout.num_models] / sums["steps"][:layout.num_models]).tolist())
  params = sharding.unpad_models(sharding.fetch(state.params), layout.num_models)
  out = {"losses": losses, "steps": sharding.fetch(state.step)[:layout.num_models].tolist(),
         "mesh": [layout.action_size, layout.data_size, layout.padded_models],
         "slots": run.slot_layout.slots, "global_steps": step,
         "params": {"/".join(str(getattr(k, "key", k)) for k in path): np.asarray(x).tolist()
                    for path, x in jax.tree_util.tree_leaves_with_path(params)
                    if getattr(path[-1], "key", "") in ("bias", "kernel") and np.size(x) < 5000}}
  if jax.process_index() == 0:
    print(json.dumps(out))


if __name__ == "__main__":
  main()
