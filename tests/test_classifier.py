"""Tests for posejax.evaluation.classifier: window labels from the table, training, the per-frame head, the
trainer's hook (train once, reuse, refuse another config)."""

import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import default
from posejax import trainer
from pieces import pieces
from posejax.common.errors import PosejaxError
from posejax.data.dataset import SequenceRecord
from posejax.evaluation import classifier, protocols as evaluation, report, routing
from posejax.models.family import Window
from posejax.training import sampling
from posejax.workdir import layout
from test_evaluation import K, dataset, init_variables, random_poses, sequences, tiny_model
from test_evaluation_device import stack
from test_routing import make_classifier, reference_log_probs

ACTIONS = ("Eating", "Walking")


def separable_record(subject: str, name: str, frames: int, seed: int) -> SequenceRecord:
  """2D keypoints shifted down (Eating) or up (Walking): an easy signal that mirroring keeps."""
  rng = np.random.default_rng(seed)
  poses_2d = rng.normal(scale=0.1, size=(frames, K, 2)).astype(np.float32)
  poses_2d[..., 1] += 0.5 if name.startswith("Eating") else -0.5
  return SequenceRecord(subject=subject, name=name, action=name.split(" ")[0], camera=0, poses_2d=poses_2d,
                        poses_3d=random_poses(frames, seed).astype(np.float32), intrinsic=None, res_w=1000,
                        res_h=1000)


def separable_data():
  train = dataset([separable_record("S1", "Eating 1", 20, 0), separable_record("S1", "Walking 1", 17, 1),
                   separable_record("S5", "Eating 2", 11, 2), separable_record("S5", "Walking 2", 23, 3)])
  test = dataset([separable_record("S9", "Eating 1", 9, 4), separable_record("S9", "Walking 1", 12, 5),
                  separable_record("S11", "Walking 2", 6, 6)])
  return train, test


def small_config():
  config = default.get_config()
  config.mode = "action_based"
  config.actions = ",".join(ACTIONS)
  config.model.filter_widths = (3, 3)
  config.model.dropout = 0.0
  config.train.batch_size = 16
  config.train.lr = 1e-2
  config.train.steps_per_call = 4
  config.classifier.channels = 8
  config.classifier.epochs = 4
  config.classifier.filter_widths = (3,)
  config.eval.chunk = 8
  return config


def test_window_labels_recover_each_windows_action():
  records = [separable_record("S1", name, n, i) for i, (name, n) in
             enumerate([("Walking 1", 7), ("Eating 1", 5), ("Sitting 1", 9), ("Eating 2", 4)])]
  actions = ("Eating", "Sitting", "Walking")
  data = classifier.training_data(dataset(records), actions, augment=True)
  assert data.classes == actions and data.table.num_frames == 25
  # Reference: the frame rows of each record in the table (records in dataset order).
  frame_action = np.repeat([actions.index(r.action) for r in records], [len(r.poses_2d) for r in records])
  tables = jax.device_put(data.table.arrays())
  spec = sampling.window_spec(data.table, batch_size=8, window=Window(3, 0), seed=3,
                              stream_ids=[classifier.CLASSIFIER_ID])
  seen = set()
  for position in range(14):  # more than two epochs of 50 examples
    where = sampling.example_indices(tables, spec, jnp.zeros((1,), jnp.int32), jnp.asarray([position], jnp.int32))
    labels = np.asarray(classifier.window_labels(tables, jnp.asarray(data.block_label), where["frame"]))
    frames = np.asarray(where["frame"])
    np.testing.assert_array_equal(labels, frame_action[frames])
    seen.update(zip(frames.ravel().tolist(), np.asarray(where["flip"]).ravel().tolist()))
  assert len(seen) == 50  # every frame, mirrored and not


def test_log_prob_head_equals_whole_sequence_reference():
  clf = make_classifier(ACTIONS, seed=3, widths=(3, 3))
  model = tiny_model()
  inputs = sequences([1, 5, 13])
  records = [separable_record("S9", f"Eating {i}", len(x), i) for i, x in enumerate(inputs)]
  for r, x in zip(records, inputs):
    r.poses_2d[:] = x
  resident = evaluation.resident_test_set(dataset(records), ACTIONS, model, chunk=4, batch=2)
  for tta in (False, True):
    flat = np.asarray(classifier.frame_log_probs(clf, resident, tta=tta))
    per_record = evaluation.split_records(flat, resident)
    for x, got in zip(inputs, per_record):
      np.testing.assert_allclose(got, reference_log_probs(clf, x, tta), atol=2e-5)


def _run(config, workdir, pose_variables=None):
  train, test = separable_data()
  model = tiny_model()
  resident = evaluation.resident_test_set(test, ACTIONS, model, chunk=8)
  variables = pose_variables or stack(init_variables(model, 1), init_variables(model, 2))
  results = evaluation.evaluate_dataset(model, variables, resident, ACTIONS)
  document = report.results_document(results, checkpoint_step=3, routing="oracle (ground-truth action labels)")
  run = types.SimpleNamespace(config=config, mode=str(config.mode), workdir=workdir, actions=ACTIONS,
                              train_ds=train, test_set=resident, eval_model=model, fingerprint="test-data")
  return run, variables, document


def _train_classifier(run, variables, document):
  return trainer.train_classifier(pieces(run.config, mode=run.mode), run.workdir, actions=run.actions,
                                  train_ds=run.train_ds, fingerprint=run.fingerprint, test_set=run.test_set,
                                  eval_model=run.eval_model, pose_variables=variables, document=document)


def test_train_and_save_learns_saves_reuses_and_refuses_another_config(tmp_path, capsys):
  config, workdir = small_config(), str(tmp_path / "run")
  run, variables, document = _run(config, workdir)
  out = _train_classifier(run, variables, document)
  printed = capsys.readouterr().out
  assert "classifier [4/4]" in printed and "Routing (Protocol #1 MPJPE" in printed
  assert out["classifier"]["sequence_accuracy"] == 1.0 and out["classifier"]["frame_accuracy"] == 1.0
  assert list(out["routings"]) == ["oracle", "predicted", "soft"] and out["routing_mode"] == "oracle"
  assert out["average"] == document["average"]  # the training's headline: the seed's oracle routing
  # A perfect classifier routes as the oracle does.
  assert out["routings"]["predicted"]["average"] == pytest.approx(out["routings"]["oracle"]["average"], rel=1e-6)
  assert os.path.isfile(os.path.join(layout.eval_dir(workdir, 3, layout.FINAL_EVAL), routing.CONFUSION_FIGURE))
  assert report.load_results(layout.results_path(workdir, 3, layout.FINAL_EVAL))["routing_mode"] == "oracle"

  saved = classifier.restore(workdir)
  assert saved.classes == ACTIONS and saved.metadata["steps"] == -(-4 * 142 // 16)
  assert saved.metadata["history"][-1]["train_accuracy"] > 0.9
  again = _train_classifier(run, variables, document)  # a rerun of the finished run: no retraining
  assert "reusing" in capsys.readouterr().out and again["classifier"] == out["classifier"]

  config.classifier.channels = 16
  with pytest.raises(PosejaxError, match="channels=8 \\(config: 16\\)"):
    _train_classifier(run, variables, document)
  config.classifier.channels = 8
  config.classifier.enabled = False
  assert _train_classifier(run, variables, document) == document


def test_enabled_by_default_only_in_action_based_mode():
  config = small_config()
  assert pieces(config, mode="action_based").classifier_enabled and not pieces(config, mode="common").classifier_enabled
  config.classifier.enabled = True
  assert pieces(config, mode="common").classifier_enabled
  del config["classifier"]  # configs of older runs
  assert pieces(config, mode="action_based").classifier_enabled


def test_a_damaged_classifier_checkpoint_is_an_error_to_evaluation_and_set_aside_by_training(tmp_path):
  """The classifier's checkpoint follows the pose models': atomic saves, damaged steps moved aside."""
  config, workdir = small_config(), str(tmp_path / "run")
  hp = classifier.hparams(pieces(config), ACTIONS, K)
  variables = jax.tree.map(np.asarray, classifier.build(hp, strided=False).init(
      jax.random.key(0), jnp.zeros((1, 3, K, 2)), train=False))
  classifier.save(workdir, variables, {"hparams": hp, "steps": 7})
  saved = classifier.restore(workdir)
  assert saved.classes == ACTIONS and saved.metadata["steps"] == 7
  jax.tree.map(np.testing.assert_array_equal, saved.variables, variables)
  directory = layout.classifier_dir(workdir)
  for root, _, files in os.walk(os.path.join(directory, "7", "variables")):
    for name in files:
      with open(os.path.join(root, name), "wb") as f:  # a truncated write
        f.write(b"")
  with pytest.raises(PosejaxError, match="unreadable checkpoint at step 7") as e:
    classifier.restore(workdir)
  assert "\n" not in str(e.value)
  assert classifier.restore(workdir, repair=True) is None  # the trainer then trains it again
  assert os.listdir(directory + "_unreadable") == ["7"] and not os.path.exists(os.path.join(directory, "7"))


def test_classifier_training_stops_between_calls_when_asked():
  config = small_config()
  train, _ = separable_data()
  hp = classifier.hparams(pieces(config), ACTIONS, K)
  data = classifier.training_data(train, ACTIONS, True)
  calls = []
  stop = lambda: calls.append(1) or len(calls) > 2  # true at the third check
  assert classifier.train(hp, data, steps_per_call=1, log=lambda line: None, stop_requested=stop) is None
  assert len(calls) == 3
