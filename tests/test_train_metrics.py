"""config.eval.train_metrics: the reference's 3d_eval (each model on its own labeled training
sequences in eval mode, no TTA), checked against a float64 NumPy MPJPE of the final checkpoint."""

import contextlib
import glob
import io
import os

import jax
import numpy as np
import pytest

from posejax import trainer
from posejax.data import synthetic
from posejax.data.loading import load_data
from posejax.models import spec as model_spec
from posejax.models.tcn import receptive_field
from posejax.workdir import checkpoints as checkpointing, layout as workdir_lib
from pieces import data_args
from conftest import tiny_config


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("synthetic"))
  synthetic.generate(path, frames=24, seed=0)
  return path


def _config(data_dir, mode="action_based", train_metrics=None):
  config = tiny_config(data_dir, mode, **{
      # The logged value must cover exactly the training data the run trains on.
      "data.subset": 0.5, "data.downsample": 2,
      "eval.chunk": 4,  # several chunks per sequence: chunking must not change the result
      "classifier.enabled": False})
  if train_metrics is not None:
    config.eval.train_metrics = train_metrics
  return config


def _records(workdir):
  return workdir_lib.read_metrics(workdir, required=True)


@pytest.fixture(scope="module")
def ab_run(data_dir, tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("ab_train_metrics"))
  config = _config(data_dir, train_metrics=True)
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    trainer.train_and_evaluate(config, workdir)
  return config, workdir, out.getvalue()


def _sequence_errors(model, variables, slice_index, sequence):
  """(frames, float64 sum over frames of the per-joint mean error) of one whole sequence run at
  once through slice `slice_index`'s model in eval mode, edge-padded as the reference does."""
  one = jax.tree.map(lambda v: np.asarray(v)[slice_index], variables)
  pad = (receptive_field(model.filter_widths) - 1) // 2
  x = np.pad(sequence.poses_2d, ((pad, pad), (0, 0), (0, 0)), mode="edge")
  pred = np.asarray(model.apply(one, x[None], train=False)[0], np.float64)
  target = np.array(sequence.poses_3d, np.float64)
  target[:, 0] = 0
  return len(target), float(np.linalg.norm(pred - target, axis=-1).mean(axis=-1).sum())


def _reference(workdir, model_of):
  """{action: (frames, error sum)} of the final checkpoint on the run's training sequences, each
  sequence lifted by the slice `model_of(action)` names."""
  config, variables, actions, _, meta = checkpointing.restore_for_eval(workdir, "latest")
  model = model_spec.build(meta["model"])
  train_ds = load_data(*data_args(config), ["Eating", "Walking"])[0]
  out = {}
  for sequence in train_ds.sequences:
    frames, error = _sequence_errors(model, variables, actions.index(model_of(sequence.action)), sequence)
    n, e = out.get(sequence.action, (0, 0.0))
    out[sequence.action] = (n + frames, e + error)
  return out


def test_train_eval_is_the_final_models_error_on_the_training_sequences(ab_run):
  config, workdir, printed = ab_run
  records = _records(workdir)
  assert [r["epoch"] for r in records] == [1, 2]
  last = records[-1]
  sums = _reference(workdir, lambda action: action)
  frames = sum(n for n, _ in sums.values())
  assert frames == sum(s.num_frames for s in load_data(*data_args(config), ["Eating", "Walking"])[0].sequences)
  full = _config(config.data.dir)
  full.data.subset, full.data.downsample = 1.0, 1
  assert 4 * frames <= load_data(*data_args(full), ["Eating", "Walking"])[0].frames()  # not the full training data
  # 3d_eval: frame-weighted over all training frames; its plain mean over actions beside it.
  assert last["mpjpe_train_eval"] == pytest.approx(sum(e for _, e in sums.values()) / frames, rel=1e-5)
  assert last["mpjpe_train_eval_action_mean"] == pytest.approx(np.mean([e / n for n, e in sums.values()]),
                                                               rel=1e-5)
  assert "mpjve_train_eval" in last and records[0]["mpjpe_train_eval"] != last["mpjpe_train_eval"]
  # Printed between 3d_train and 3d_valid, in mm.
  lines = [line for line in printed.splitlines() if line.startswith("[2]")]
  assert lines and f"3d_eval {1000 * last['mpjpe_train_eval']:.2f} 3d_valid" in lines[0]
  assert lines[0].index("3d_train") < lines[0].index("3d_eval")


def test_each_action_is_scored_by_its_own_model(ab_run):
  _, workdir, _ = ab_run
  last = _records(workdir)[-1]
  own = _reference(workdir, lambda action: action)
  other = _reference(workdir, lambda action: "Walking" if action == "Eating" else "Eating")
  for action in ("Eating", "Walking"):
    n, e = own[action]
    logged = last["per_action"][action]["mpjpe_train_eval"]
    assert logged == pytest.approx(e / n, rel=1e-5)
    assert logged != pytest.approx(other[action][1] / n, rel=1e-3)  # routing matters
    assert {"mpjpe_valid", "mpjve_train_eval", "loss"} <= set(last["per_action"][action])
  tags = _tensorboard_tags(workdir)
  if tags is not None:
    assert {"mpjpe_train_eval", "Eating/mpjpe_train_eval", "Walking/mpjpe_train_eval"} <= tags


def _tensorboard_tags(workdir):
  try:
    from posejax.common.tf_compat import tf
  except ImportError:
    return None
  tags = set()
  for path in glob.glob(os.path.join(workdir, "events.out.tfevents*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(v.tag for v in event.summary.value)
  return tags


def test_off_by_default(data_dir, tmp_path, monkeypatch, capsys):
  config = _config(data_dir, mode="common")
  assert config.eval.train_metrics is False
  validated = []
  validate = trainer.Run.validate

  def counting(run, state, test_set):
    assert run.train_set is None
    validated.append(test_set is run.test_set)
    return validate(run, state, test_set)

  monkeypatch.setattr(trainer.Run, "validate", counting)
  trainer.train_and_evaluate(config, str(tmp_path / "w"))
  assert validated == [True, True]  # the test set only, once per log point
  records = _records(str(tmp_path / "w"))
  assert not any("train_eval" in key for r in records for key in [*r, *(k for v in r["per_action"].values()
                                                                        for k in v)])
  assert "3d_eval" not in capsys.readouterr().out
