"""Evaluates a training workdir, renders or exports its predictions, or compares two runs.

  python eval.py --workdir runs/common [--config configs/quickstart.py] [--checkpoint latest|STEP|best]
  python eval.py --workdir runs/common --config CONFIG --config.eval.by_subject=True
  python eval.py --workdir runs/ab --render --viz_subject S11 --viz_action "Walking 1" --viz_camera 0 \
      --viz_output walk.gif --viz_size 3 --viz_downsample 2 --viz_limit 60
  python eval.py --workdir runs/ab --routing=soft --common runs/common --cross_action
  python eval.py --workdir runs/ab --export predictions.npz
  python eval.py --compare runs/common runs/ab --out runs/comparison

The default checkpoint is the latest: the final model of a finished run, as the reference
evaluates. `best` (lowest held-out validation MPJPE) exists only for runs with a validation
split (config.data.valid_subjects); the test set never selects a checkpoint. The evaluation of
checkpoint step N writes results.{json,csv,md} and its figures to its own folder
WORKDIR/eval/step_N/NAME, NAME made of the options that change the results (e.g. `predicted`,
`soft+common-common+cross_action`; the trainer's is `final`), replacing only that folder when
run again; the last line names every file written. `--compare` uses each run's final checkpoint. `--config` is optional when the workdir holds config.json. The logic lives in
posejax.evaluation.runs and posejax.evaluation.compare. Every bad path or option is one line on stderr and exit
status 2; an unreadable 'latest' checkpoint falls back to the next readable one with a warning
(docs/reliability.md).
"""

from absl import app, flags
from ml_collections import config_flags

from posejax.common import cli
from posejax.config import flags as config_flags_parser

cli.quiet_environment()  # before anything imports TensorFlow

config_flags.DEFINE_config_file("config", None, "Training config file (default: WORKDIR/config.json).")
flags.DEFINE_string("workdir", None, "Training workdir to evaluate.")
flags.DEFINE_string("checkpoint", None, "latest (default: the final model), a step number, or best "
                    "(runs with config.data.valid_subjects only). Not with --compare (final checkpoints).")
flags.DEFINE_string("compare", None, "DIR_COMMON DIR_AB (or DIR_COMMON,DIR_AB): build the comparison report.")
flags.DEFINE_string("out", None, "Output folder (default WORKDIR/eval/step_N/NAME, NAME from the options; "
                    "--compare: DIR_AB/../comparison).")
flags.DEFINE_string("compare_action", "Eating", "Single action of Table IV / Fig. 6 ('' for none).")
flags.DEFINE_string("routing", None, "Headline routing of an action-based run: oracle (ground-truth action "
                    "labels, the seed paper), predicted or soft (the run's action classifier; no labels), or common "
                    "(needs --common). Default: predicted when the run has a classifier, else oracle. Every available "
                    "mode is reported side by side.")
flags.DEFINE_string("common", None, "Workdir of a common run: its final model is evaluated beside the action-based "
                    "models (the 'common' routing row).")
flags.DEFINE_bool("cross_action", False, "Also evaluate every action model on every action's test data (the "
                  "cross-action matrix: table in results.md, cross_action.png).")
flags.DEFINE_bool("include_behind", False, "A checkpoint saved between log points: keep the models behind (under "
                  "half the training of the most advanced one) in the averages; they are always named and marked.")
flags.DEFINE_bool("by_subject", None, "Per-subject tables too (default: config.eval.by_subject).")
flags.DEFINE_bool("render", False, "Render one sequence instead of evaluating.")
flags.DEFINE_string("viz_subject", None, "Subject to render, e.g. S11.")
flags.DEFINE_string("viz_action", None, "Sequence to render, e.g. 'Walking 1'.")
flags.DEFINE_integer("viz_camera", 0, "Camera index.")
flags.DEFINE_string("viz_output", None, "Animation file (.gif, or .mp4 with ffmpeg).")
flags.DEFINE_float("viz_size", 5.0, "Figure size multiplier.")
flags.DEFINE_integer("viz_downsample", 1, "Average every N frames.")
flags.DEFINE_integer("viz_limit", -1, "Render only the first N frames (< 1: all), counted after "
                     "--viz_downsample as in the reference.")
flags.DEFINE_float("viz_azimuth", None, "3D view azimuth (default: the camera's).")
flags.DEFINE_string("viz_video", None, "Background video (needs ffmpeg).")
flags.DEFINE_integer("viz_bitrate", 3000, "MP4 bitrate in kbit/s (the reference's --viz-bitrate).")
flags.DEFINE_bool("viz_no_ground_truth", False, "Do not draw the ground-truth panel (the reference's "
                  "--viz-no-ground-truth).")
flags.DEFINE_integer("viz_skip", 0, "Skip the first N video frames.")
flags.DEFINE_string("export", None, "Save predictions (camera and world coordinates) to FILE.npz: the "
                    "rendered sequence with --render, else every test sequence.")
FLAGS = flags.FLAGS


def main(argv):
  cli.quiet_logging()
  # Imported here so that --help and flag errors do not wait for JAX.
  from posejax.evaluation import compare, runs as eval_lib
  from posejax.config import validation as config_validation
  from posejax.tools import render_export
  from posejax.common.errors import PosejaxError

  extra = argv[1:]
  if FLAGS.config is not None:
    config_validation.validate_config(FLAGS.config)
  if FLAGS.compare:
    dirs = [d for d in FLAGS.compare.split(",") if d] + extra
    if len(dirs) != 2:
      raise PosejaxError(f"--compare needs two workdirs (common, then action-based), got {dirs}")
    if FLAGS.checkpoint:
      raise PosejaxError("--checkpoint does not apply to --compare, which uses each run's final checkpoint")
    compare.compare_runs(dirs[0], dirs[1], FLAGS.out, action=FLAGS.compare_action or None)
    return
  if extra:
    raise PosejaxError(f"unexpected arguments: {' '.join(extra)}")
  if not FLAGS.workdir:
    raise PosejaxError("--workdir is required (or --compare DIR_COMMON DIR_AB)")
  which = FLAGS.checkpoint or eval_lib.DEFAULT_CHECKPOINT
  if FLAGS.render:
    if not FLAGS.viz_subject or not FLAGS.viz_action:
      raise PosejaxError("--render needs --viz_subject and --viz_action")
    if not FLAGS.viz_output and not FLAGS.export:
      raise PosejaxError("--render needs --viz_output (.gif/.mp4) and/or --export FILE.npz")
    options = render_export.RenderOptions(
        subject=FLAGS.viz_subject, action=FLAGS.viz_action, camera=FLAGS.viz_camera, output=FLAGS.viz_output,
        size=FLAGS.viz_size, downsample=FLAGS.viz_downsample, limit=FLAGS.viz_limit,
        azimuth=FLAGS.viz_azimuth, video=FLAGS.viz_video, video_skip=FLAGS.viz_skip, export=FLAGS.export,
        bitrate=FLAGS.viz_bitrate, ground_truth=not FLAGS.viz_no_ground_truth)
    render_export.render_workdir(FLAGS.workdir, options, which, FLAGS.config)
  elif FLAGS.export:
    render_export.export_workdir(FLAGS.workdir, FLAGS.export, which, FLAGS.config)
  else:
    eval_lib.evaluate_workdir(FLAGS.workdir, which, FLAGS.config, out_dir=FLAGS.out,
                              by_subject=FLAGS.by_subject, routing=FLAGS.routing, common_workdir=FLAGS.common,
                              cross_action=FLAGS.cross_action, include_behind=FLAGS.include_behind)


def run(argv):
  cli.run_guarded(main, argv)


if __name__ == "__main__":
  app.run(run, flags_parser=config_flags_parser.absl_flags_parser)
