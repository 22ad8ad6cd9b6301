"""Tests for posejax.evaluation.routing: routing by a classifier, the soft mixture, confusion counts, the
cross-action matrix, and their place in eval.py's results."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from posejax.common.errors import PosejaxError
from posejax.evaluation import (
    classifier as classifier_lib, protocols as evaluation, report, resident as device_eval,
    routing, runs as eval_lib, trajectory)
from posejax.models import spec as model_spec
from posejax.workdir import layout
from test_evaluation import FLIP, K, KPS_L, KPS_R, dataset, init_variables, random_poses, record, sequences, tiny_model
from posejax.models.tcn import TemporalModel
from pieces import pieces
from test_evaluation_device import np_flip, np_network, np_predict, stack

ACTIONS = ("Eating", "Walking")
DEVICE_FLIP = (tuple(FLIP["kps_left"]), tuple(FLIP["kps_right"]), tuple(FLIP["joints_left"]),
               tuple(FLIP["joints_right"]))


def make_classifier(classes, *, seed=0, forced=None, widths=(3,)) -> classifier_lib.Classifier:
  """A classifier with random weights, or one that always answers class `forced`."""
  hp = {"classes": list(classes), "filter_widths": list(widths), "channels": 8, "causal": False, "dropout": 0.0,
        "num_joints_in": K, "in_features": 2}
  model = classifier_lib.build(hp, strided=False)
  variables = init_variables(model, seed)
  if forced is not None:
    shrink = variables["params"]["tcn"]["shrink"]
    shrink["kernel"] = jnp.zeros_like(shrink["kernel"])
    shrink["bias"] = jnp.zeros_like(shrink["bias"]).at[forced].set(20.0)
  return classifier_lib.Classifier(model, variables, tuple(classes), {"hparams": hp})


def reference_log_probs(clf: classifier_lib.Classifier, x: np.ndarray, tta: bool) -> np.ndarray:
  """(T, C) float64: the classifier on the whole edge-padded sequence (no chunks), TTA by hand."""
  rf = int(np.prod(clf.model.filter_widths))
  pad = (rf - 1) // 2

  def logits(inputs):
    padded = np.pad(inputs, ((pad, pad), (0, 0), (0, 0)), mode="edge")
    return np.asarray(clf.model.apply(clf.variables, jnp.asarray(padded[None], jnp.float32), train=False),
                      np.float64)[0]

  z = (logits(x) + logits(np_flip(x, KPS_L, KPS_R))) / 2 if tta else logits(x)
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def two_models():
  model = tiny_model()
  v0, v1 = init_variables(model, 1), init_variables(model, 2)
  return model, v0, v1


def labelled_data():
  recs = [record("S9", "Eating 1", random_poses(9, 1), 1), record("S9", "Walking 1", random_poses(14, 2), 2),
          record("S11", "Eating 2", random_poses(6, 3), 3), record("S11", "Walking 2", random_poses(5, 4), 4)]
  return recs, dataset(recs)


@pytest.mark.parametrize("forced", [0, 1])
def test_predicted_routing_uses_the_predicted_model(forced):
  model, v0, v1 = two_models()
  recs, data = labelled_data()
  resident = evaluation.resident_test_set(data, ACTIONS, model, chunk=4, batch=2)
  clf = make_classifier(ACTIONS, forced=forced)
  section = routing.evaluate_routings(model, stack(v0, v1), resident, tta=True, classifier=clf)
  chosen, other = (v0, v1) if forced == 0 else (v1, v0)
  # Every sequence goes to the forced action's model: as if both slices held that model.
  expected = evaluation.evaluate_dataset(model, stack(chosen, chosen), data, ACTIONS, chunk=4, batch=2)
  wrong = evaluation.evaluate_dataset(model, stack(other, other), data, ACTIONS, chunk=4, batch=2)
  for action in ACTIONS:
    for metric in evaluation.METRICS:
      assert section["routings"]["predicted"]["per_action"][action][metric] == pytest.approx(
          expected["per_action"][action][metric], rel=1e-5)
    assert abs(section["routings"]["predicted"]["per_action"][action]["mpjpe"]
               - wrong["per_action"][action]["mpjpe"]) > 1.0  # the two models really differ
  oracle = evaluation.evaluate_dataset(model, stack(v0, v1), data, ACTIONS, chunk=4, batch=2)
  assert section["routings"]["oracle"]["average"] == pytest.approx(oracle["average"])
  metrics = section["classifier"]
  assert metrics["sequence_accuracy"] == 0.5 and metrics["frame_accuracy"] == pytest.approx(
      sum(len(r.poses_2d) for r in recs if r.action == ACTIONS[forced]) / 34)
  # Custom sequences (no labels): the same model lifts them.
  inputs = [r.poses_2d for r in recs]
  preds, used, probs, roots = routing.lift(model, stack(v0, v1), ACTIONS, inputs, mode="predicted",
                                           flip=DEVICE_FLIP, tta=True, chunk=4, batch=2, classifier=clf)
  assert roots is None  # no trajectory models
  assert used.tolist() == [forced] * 4 and np.argmax(probs, -1).tolist() == [forced] * 4
  own = evaluation.predict(model, chosen, inputs, tta=True, chunk=4, batch=2, **FLIP)
  for p, q in zip(preds, own):
    np.testing.assert_allclose(p, q, atol=1e-6)


def np_root(variables, x):
  """A trajectory model's root in float64, with the reference's trajectory flip: the mirrored
  input's x negated, no joints swapped."""
  mirrored = np_network(variables, np_flip(x, KPS_L, KPS_R), causal=False)
  mirrored[..., 0] *= -1
  return (np_network(variables, x, causal=False) + mirrored) / 2


@pytest.mark.parametrize("mode", ["fixed", "predicted", "soft"])
def test_trajectory_models_follow_the_routing(mode):
  """Each sequence's root comes from the trajectory model of the pose model that lifted it, or
  from the same per-frame mixture."""
  model, v0, v1 = two_models()
  traj_model = TemporalModel(num_joints_in=K, num_joints_out=1, filter_widths=(3, 3), channels=8, dropout=0.0)
  t0, t1 = init_variables(traj_model, 5), init_variables(traj_model, 6)
  recs, _ = labelled_data()
  inputs = [r.poses_2d for r in recs]
  clf = make_classifier(ACTIONS, forced=1) if mode == "predicted" else make_classifier(ACTIONS, seed=7)
  result = routing.lift(model, stack(v0, v1), ACTIONS, inputs, mode=mode, flip=DEVICE_FLIP, tta=True, chunk=4,
                        batch=2, classifier=None if mode == "fixed" else clf,
                        trajectory=trajectory.Trajectory(traj_model, stack(t0, t1)))
  for x, root in zip(inputs, result.roots):
    per_model = [np_root(t, x) for t in (t0, t1)]
    if mode == "soft":
      weights = np.exp(reference_log_probs(clf, x, tta=True))
      expected = sum(weights[:, a, None, None] * per_model[a] for a in range(2))
    else:
      expected = per_model[0 if mode == "fixed" else 1]
    assert root.shape == (len(x), 1, 3)
    np.testing.assert_allclose(root, expected, atol=2e-5)


def test_soft_mixture_equals_hand_computed_weighted_mean():
  model, v0, v1 = two_models()
  recs, data = labelled_data()
  clf = make_classifier(ACTIONS, seed=7, widths=(3, 3))  # its own receptive field (9) over the same frames
  inputs = [r.poses_2d for r in recs]
  preds, used, probs, _ = routing.lift(model, stack(v0, v1), ACTIONS, inputs, mode="soft", flip=DEVICE_FLIP,
                                       tta=True, chunk=4, batch=2, classifier=clf)
  assert used.tolist() == [-1] * 4
  hand = []
  for x, p, prob in zip(inputs, preds, probs):
    log_probs = reference_log_probs(clf, x, tta=True)
    weights = np.exp(log_probs)
    assert weights.min() < 0.9 and weights.max() > 0.1  # a real mixture, not a routing
    per_model = [np_predict(v, x, causal=False, tta=True) for v in (v0, v1)]
    expected = sum(weights[:, a, None, None] * per_model[a] for a in range(2))
    np.testing.assert_allclose(p, expected, atol=2e-5)
    mean = log_probs.mean(0)
    np.testing.assert_allclose(prob, np.exp(mean) / np.exp(mean).sum(), atol=1e-5)
    hand.append(expected)
  # The soft row of an evaluation scores the same mixture.
  resident = evaluation.resident_test_set(data, ACTIONS, model, chunk=4, batch=2)
  section = routing.evaluate_routings(model, stack(v0, v1), resident, tta=True, classifier=clf)
  scored = evaluation.score(data, hand)
  for action in ACTIONS:
    for metric in evaluation.METRICS:
      assert section["routings"]["soft"]["per_action"][action][metric] == pytest.approx(
          scored["per_action"][action][metric], rel=1e-4, abs=1e-4)


def test_confusion_matrix_and_accuracies_equal_hand_counts():
  assert routing.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3).tolist() == [
      [1, 1, 0], [0, 1, 0], [1, 0, 2]]
  classes = ("Directions", "Eating", "Sitting", "Walking")
  recs = [record("S9", "Eating 1", random_poses(3, 1)), record("S9", "Walking 1", random_poses(5, 2)),
          record("S11", "Sitting 1", random_poses(4, 3)), record("S11", "Eating 2", random_poses(2, 4))]
  model = tiny_model()
  resident = evaluation.resident_test_set(dataset(recs), ["all"], model, chunk=2, batch=1)
  rng = np.random.default_rng(0)
  per_record = [np.log(rng.dirichlet(np.ones(4), size=len(r.poses_2d))) for r in recs]
  flat = jnp.asarray(np.concatenate([per_record[i] for i in resident.records]), jnp.float32)
  scores = routing.ActionScores(classes, flat, device_eval.sequence_means(flat, resident))
  for i, lp in enumerate(per_record):
    np.testing.assert_allclose(scores.sequence_log_probs[i], lp.mean(0), rtol=1e-5)
  metrics = routing.classifier_metrics(scores, resident)

  # Hand counts, one frame and one sequence at a time.
  frames_conf, seq_conf = np.zeros((4, 4), int), np.zeros((4, 4), int)
  frame_hits = frame_top3 = seq_hits = seq_top3 = 0
  for rec, lp in zip(recs, per_record):
    truth = classes.index(rec.action)
    for row in lp:
      frames_conf[truth, int(np.argmax(row))] += 1
      frame_hits += int(np.argmax(row) == truth)
      frame_top3 += int(truth in np.argsort(-row)[:3])
    mean = lp.mean(0)
    seq_conf[truth, int(np.argmax(mean))] += 1
    seq_hits += int(np.argmax(mean) == truth)
    seq_top3 += int(truth in np.argsort(-mean)[:3])
  assert metrics["confusion_frames"] == frames_conf.tolist() and metrics["confusion_sequences"] == seq_conf.tolist()
  assert metrics["frames"] == 14 and metrics["sequences"] == 4
  assert metrics["frame_accuracy"] == pytest.approx(frame_hits / 14)
  assert metrics["frame_top3"] == pytest.approx(frame_top3 / 14)
  assert metrics["sequence_accuracy"] == pytest.approx(seq_hits / 4)
  assert metrics["sequence_top3"] == pytest.approx(seq_top3 / 4)
  assert 0 < frame_hits < 14 and frame_top3 > frame_hits  # the draw exercises every count


def test_cross_action_matrix_is_every_model_on_every_action():
  model, v0, v1 = two_models()
  recs, data = labelled_data()
  resident = evaluation.resident_test_set(data, ACTIONS, model, chunk=4, batch=2)
  everything = evaluation.predict_all(model, stack(v0, v1), resident, tta=True)
  assert everything.shape == (2, 34, 17, 3)
  # Oracle routing is the diagonal of the all-models pass.
  oracle_rows = np.asarray(device_eval.take_models(everything, jnp.asarray(
      np.asarray([0, 1, 0, 1])[resident.records][np.asarray(resident.frame_sequence)])))
  np.testing.assert_allclose(oracle_rows, np.asarray(device_eval.predict(model, stack(v0, v1), resident, tta=True)),
                             atol=1e-6)
  cross = routing.cross_summary(evaluation.cross_action_matrix(everything, resident))
  assert cross["actions"] == list(ACTIONS) and cross["models"] == list(ACTIONS)
  for j, v in enumerate((v0, v1)):
    alone = evaluation.evaluate_dataset(model, stack(v, v), data, ACTIONS, chunk=4, batch=2)
    for i, action in enumerate(ACTIONS):
      assert cross["mpjpe"][i][j] == pytest.approx(alone["per_action"][action]["mpjpe"], rel=1e-5)
  oracle = evaluation.evaluate_dataset(model, stack(v0, v1), data, ACTIONS, chunk=4, batch=2)
  for i, action in enumerate(ACTIONS):
    assert cross["oracle"][action] == pytest.approx(oracle["per_action"][action]["mpjpe"], rel=1e-5)
    assert cross["best"][action] == min(cross["mpjpe"][i])
    assert cross["best_model"][action] == ACTIONS[int(np.argmin(cross["mpjpe"][i]))]
  assert cross["oracle_average"] == pytest.approx(oracle["average"]["mpjpe"], rel=1e-5)
  table = report.cross_action_table(cross)
  assert table.header == ("Test action", "Eat", "Walk", "Oracle", "Best") and table.labels[-1] == "Avg"


def _colorbar_label(image) -> str:
  assert image.colorbar is not None
  return image.colorbar.ax.get_ylabel()


def test_confusion_figure_has_labelled_colour_bars():
  import matplotlib.pyplot as plt
  metrics = {"classes": list(ACTIONS), "sequence_accuracy": 0.75, "frame_accuracy": 0.625,
             "confusion_sequences": [[2, 0], [1, 1]], "confusion_frames": [[4, 0], [3, 1]]}
  fig = routing.confusion_plot(metrics)
  sequences, frames = fig.axes[:2]
  assert _colorbar_label(sequences.images[0]) == "test sequences (count)"
  assert _colorbar_label(frames.images[0]) == "fraction of the true action's test frames"
  np.testing.assert_allclose(frames.images[0].get_array(), [[1.0, 0.0], [0.75, 0.25]])  # row shares
  assert "75.0%" in sequences.get_title() and "62.5%" in frames.get_title() and fig.get_suptitle()
  plt.close(fig)


def test_cross_action_figure_explains_its_marks():
  import matplotlib.pyplot as plt
  matrix = {"actions": list(ACTIONS), "models": list(ACTIONS), "mpjpe": [[50.0, 40.0], [70.0, 60.0]]}
  cross = routing.cross_summary(matrix)
  fig = routing.cross_action_plot(cross)
  ax = fig.axes[0]
  assert _colorbar_label(ax.images[0]) == "MPJPE (mm)"
  legend = [t.get_text() for t in fig.legends[0].get_texts()]
  assert legend == ["red box: the test action's own model (oracle routing)",
                    "red dot: the best model for the test action (lowest MPJPE in the row)"]
  # The boxes sit on the own-model cells, the dots on each row's minimum (column 1 in both rows).
  assert [p.get_xy() for p in ax.patches] == [(-0.5, -0.5), (0.5, 0.5)]
  assert [int(line.get_xdata()[0]) for line in ax.get_lines()] == [1, 1]
  plt.close(fig)


@pytest.fixture
def routed_run(tmp_path, monkeypatch):
  """A finished two-action workdir with a saved action classifier (always 'Walking')."""
  from test_eval_lib import sample_data, stacked_variables, tiny_config, write_run
  config = tiny_config()
  variables = stacked_variables(config, 3)
  workdir = write_run(tmp_path / "run", config, {8: variables}, total_steps=8)
  clf = make_classifier(ACTIONS, forced=1)
  classifier_lib.save(workdir, clf.variables, {"hparams": clf.metadata["hparams"], "steps": 5})
  recs, data = sample_data()
  monkeypatch.setattr(eval_lib, "load_test_dataset", lambda cfg, subjects=None, actions=None: data)
  return workdir, config, variables, data


def test_eval_workdir_reports_every_routing_side_by_side(routed_run, capsys):
  workdir, config, variables, data = routed_run
  restored = classifier_lib.restore(workdir)
  assert restored.classes == ACTIONS and restored.model.num_classes == 2
  doc = eval_lib.evaluate_workdir(workdir, routing="soft", cross_action=True)
  out = capsys.readouterr().out
  assert "headline: soft" in out and "Cross-action" in out
  out_dir = layout.eval_dir(workdir, 8, "soft+cross_action")
  assert f"wrote {out_dir}/results.json, results.csv, results.md, confusion.png, cross_action.png\n" in out
  saved = json.load(open(os.path.join(out_dir, "results.json")))
  assert saved["routing_mode"] == "soft" and list(saved["routings"]) == ["oracle", "predicted", "soft"]
  assert saved["routings"]["oracle"]["needs_labels"] and not saved["routings"]["predicted"]["needs_labels"]
  assert saved["average"] == saved["routings"]["soft"]["average"] == doc["average"]
  model = model_spec.build(model_spec.from_config(pieces(config).model, num_keypoints=K))
  walking = jax.tree.map(lambda x: x[1], variables)
  expected = evaluation.evaluate_dataset(model, stack(walking, walking), data, ACTIONS, chunk=4, batch=2)
  assert saved["routings"]["predicted"]["average"]["mpjpe"] == pytest.approx(expected["average"]["mpjpe"], rel=1e-5)
  assert saved["classifier"]["confusion_sequences"] == [[0, 2], [0, 1]]
  md = open(os.path.join(out_dir, "results.md")).read()
  assert "| oracle (needs labels) |" in md and "| predicted |" in md and "## Cross-action matrix" in md
  for name in (routing.CONFUSION_FIGURE, routing.CROSS_ACTION_FIGURE):
    with Image.open(os.path.join(out_dir, name)) as im:
      assert im.size[0] > 100
  assert report.routing_results(saved, "oracle")["average"] == saved["routings"]["oracle"]["average"]

  predicted = eval_lib.evaluate_workdir(workdir, routing="predicted", verbose=False)
  assert predicted["routing_mode"] == "predicted" and "cross_action" not in predicted
  assert eval_lib.evaluate_workdir(workdir, verbose=False)["routing_mode"] == "predicted"  # the default


def test_eval_and_infer_command_lines_route(routed_run, tmp_path, capsys):
  from absl import flags
  from posejax.tools import infer
  from test_eval_lib import run_cli
  from test_infer import keypoints, write_custom
  workdir = routed_run[0]
  assert run_cli(["--workdir", workdir, "--routing=soft", "--cross_action"]) == 0
  assert "headline: soft" in capsys.readouterr().out
  assert json.load(open(layout.results_path(workdir, 8, "soft+cross_action")))["cross_action"]["models"] == list(ACTIONS)
  assert run_cli(["--workdir", workdir, "--routing=common"]) == 2
  err = capsys.readouterr().err
  assert err.startswith("error: ") and err.count("\n") == 1 and "--common DIR" in err

  path = write_custom(tmp_path / "data_2d_custom_test.npz", {"clip.mp4": keypoints(11)})
  values = infer._define_flags(flags.FlagValues())
  argv = values(["infer", "--workdir", workdir, "--keypoints", path, "--out", str(tmp_path / "out"),
                 "--routing", "soft"])
  infer.main(argv, values)
  with np.load(str(tmp_path / "out" / "clip.mp4.npz")) as f:
    assert str(f["model_action"]) == "soft mixture" and str(f["predicted_action"]) == "Walking"


def test_routing_modes_that_cannot_run_are_one_line_errors(routed_run, tmp_path):
  workdir = routed_run[0]
  with pytest.raises(PosejaxError, match="--routing=common needs --common"):
    eval_lib.evaluate_workdir(workdir, routing="common", verbose=False)
  with pytest.raises(PosejaxError, match="expected one of oracle, predicted, soft, common"):
    eval_lib.evaluate_workdir(workdir, routing="best", verbose=False)
  with pytest.raises(PosejaxError, match="no action classifier"):
    routing.check_mode("soft", action_based=True, has_classifier=False, has_common=False)
  with pytest.raises(PosejaxError, match="a common run has one model"):
    routing.check_mode("predicted", action_based=False, has_classifier=True, has_common=False)
  with pytest.raises(PosejaxError, match="knows Eating, Walking; no class for model"):
    routing.predicted_routes(routing.ActionScores(ACTIONS, jnp.zeros((1, 2)), np.zeros((1, 2))),
                             ["Eating", "Sitting"])


def test_common_row_is_the_common_runs_model_on_the_same_test_set(routed_run, tmp_path, monkeypatch):
  workdir, config, variables, data = routed_run
  common_dir = str(tmp_path / "common")
  os.makedirs(common_dir)
  common_config = config.copy_and_resolve_references()
  common_config.mode, common_config.model.channels = "common", 16
  common_model = model_spec.build(model_spec.from_config(pieces(common_config).model, num_keypoints=K))
  common_variables = stack(init_variables(common_model, 9))
  restore = eval_lib._restore_for_eval
  monkeypatch.setattr(eval_lib, "_restore_for_eval", lambda w, which: (
      (common_config, common_variables, ["all"], 5, {}) if w == common_dir else restore(w, which)))
  doc = eval_lib.evaluate_workdir(workdir, routing="common", common_workdir=common_dir, verbose=False)
  expected = evaluation.evaluate_dataset(common_model, common_variables, data, ["all"], chunk=4, batch=2)
  assert list(doc["routings"]) == ["oracle", "predicted", "soft", "common"] and doc["routing_mode"] == "common"
  assert doc["average"]["mpjpe"] == pytest.approx(expected["average"]["mpjpe"], rel=1e-5)
  assert doc["routings"]["common"]["workdir"] == common_dir and doc["routings"]["common"]["checkpoint_step"] == 5
  with pytest.raises(PosejaxError, match="not a common run"):
    eval_lib.evaluate_workdir(workdir, common_workdir=workdir, verbose=False)


def _files(folder):
  """{name: bytes} of the files in `folder`."""
  return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def test_evaluations_with_other_options_write_other_folders(routed_run):
  workdir = routed_run[0]
  eval_lib.evaluate_workdir(workdir, verbose=False)
  default = layout.eval_dir(workdir, 8, "predicted")
  before = {name: (data, os.stat(os.path.join(default, name)).st_mtime_ns) for name, data in _files(default).items()}
  eval_lib.evaluate_workdir(workdir, routing="soft", cross_action=True, verbose=False)
  assert sorted(os.listdir(layout.step_dir(workdir, 8))) == ["predicted", "soft+cross_action"]
  assert {name: (data, os.stat(os.path.join(default, name)).st_mtime_ns)
          for name, data in _files(default).items()} == before
  assert json.loads(before["results.json"][0])["routing_mode"] == "predicted"
  assert report.load_results(layout.results_path(workdir, 8, "soft+cross_action"))["routing_mode"] == "soft"


def test_an_evaluation_folder_holds_exactly_its_files(routed_run, tmp_path):
  workdir = routed_run[0]
  eval_lib.evaluate_workdir(workdir, routing="soft", cross_action=True, verbose=False)
  assert sorted(os.listdir(layout.eval_dir(workdir, 8, "soft+cross_action"))) == [
      "confusion.png", "cross_action.png", "results.csv", "results.json", "results.md"]
  soft = layout.eval_dir(workdir, 8, "soft")
  os.makedirs(soft)
  open(os.path.join(soft, routing.CROSS_ACTION_FIGURE), "wb").write(b"an earlier version's figure")
  eval_lib.evaluate_workdir(workdir, routing="soft", verbose=False)  # without cross_action: its own folder
  assert sorted(os.listdir(soft)) == ["confusion.png", "results.csv", "results.json", "results.md"]
  assert "cross_action" not in report.load_results(os.path.join(soft, "results.json"))
  assert not [n for n in os.listdir(layout.step_dir(workdir, 8)) if n.startswith(".")]  # no temporary folder

  # --out into a folder with other files: those stay, the evaluation's own stale files go.
  out = tmp_path / "shared"
  out.mkdir()
  (out / "notes.txt").write_text("mine")
  (out / routing.CROSS_ACTION_FIGURE).write_bytes(b"stale")
  eval_lib.evaluate_workdir(workdir, routing="soft", out_dir=str(out), verbose=False)
  assert sorted(os.listdir(out)) == ["confusion.png", "notes.txt", "results.csv", "results.json", "results.md"]
  assert (out / "notes.txt").read_text() == "mine"
