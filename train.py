"""Trains posejax models: one model on all actions (common) or one per action (action-based).

  python train.py --config configs/quickstart.py --workdir /tmp/qs_ab
  python train.py --config configs/ab243.py --workdir runs/ab243 --config.train.budget=equal_samples

Config fields can be overridden on the command line (`--config.train.epochs=10`); `--help`
lists them all with their defaults and meanings. A run resumes from the latest readable
checkpoint in --workdir; SIGTERM/SIGINT save a checkpoint and stop. Before anything is loaded
the config is validated, the workdir is checked to be writable and locked (a second run in
the same workdir refuses); every such problem is one line on stderr and exit status 2 (see
docs/reliability.md).
"""

import contextlib
import functools
import signal
import sys

from absl import app, flags
from ml_collections import config_flags

from posejax.common import cli
from posejax.config import fields as config_fields, flags as config_flags_parser

cli.quiet_environment()  # before anything imports TensorFlow

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Training configuration file (configs/*.py).",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  cli.quiet_logging()
  # Ctrl-C before training starts, or a second one during it, ends the process at once rather
  # than raising KeyboardInterrupt wherever it lands (checkpoints are written atomically).
  signal.signal(signal.SIGINT, signal.SIG_DFL)
  # Imported here so that --help and flag errors do not wait for JAX and TensorFlow.
  from posejax.config import validation as config_validation
  from posejax.common import workdir_lock
  from posejax.common.errors import PosejaxError

  if len(argv) > 1:
    raise PosejaxError(f"unexpected arguments: {' '.join(argv[1:])} (options are --flag=value)")
  config_validation.validate_config(FLAGS.config)
  # A run rejected before it writes anything (missing data, a bad option) leaves no empty workdir.
  created = workdir_lock.missing_folders(FLAGS.workdir)
  try:
    workdir_lock.check_writable(FLAGS.workdir)
    # In a multi-host run every process shares the workdir: no lock (one launcher owns it).
    lock = (contextlib.nullcontext() if FLAGS.config.get("distributed", False)
            else workdir_lock.WorkdirLock(FLAGS.workdir))
    with lock:
      import jax
      from posejax import trainer
      print(f"JAX {jax.__version__}, process {jax.process_index()} of {jax.process_count()}, "
            f"devices: {', '.join(str(d) for d in jax.devices())}", flush=True)
      result = trainer.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  except BaseException:
    workdir_lock.remove_empty(created)
    raise
  if result.get("interrupted"):
    sys.exit(0)


def guarded_main(argv):
  cli.run_guarded(main, argv, where=f"--workdir {FLAGS.workdir}")


if __name__ == "__main__":
  # --help also lists every config field (configs/default.py) with its default and meaning.
  app.run(guarded_main, flags_parser=functools.partial(config_flags_parser.absl_flags_parser, help_epilog=config_fields.listing))
