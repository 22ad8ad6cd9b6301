"""Trains posejax models: one model on all actions (common) or one per action (action-based).

  python train.py --config configs/quickstart.py --workdir /tmp/qs_ab
  python train.py --config configs/ab243.py --workdir runs/ab243 --config.train.budget=equal_samples

Config fields can be overridden on the command line (`--config.train.epochs=10`). A run
resumes from the latest checkpoint in --workdir; SIGTERM/SIGINT save a checkpoint and stop.
"""

import sys

from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file (configs/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  # Imported here so that --help and flag errors do not wait for JAX and TensorFlow.
  import jax
  from posejax import trainer
  from posejax.errors import PosejaxError

  logging.set_verbosity(logging.WARNING)
  print(f"JAX {jax.__version__}, process {jax.process_index()} of {jax.process_count()}, "
        f"devices: {', '.join(str(d) for d in jax.devices())}", flush=True)
  try:
    result = trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except PosejaxError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
  if result.get("interrupted"):
    sys.exit(0)


if __name__ == "__main__":
  app.run(main)
