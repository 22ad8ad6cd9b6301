"""End-to-end tests of posejax.trainer on tiny synthetic data: both modes, files, resume."""

import functools
import glob
import hashlib
import json
import os
import signal

import jax
import numpy as np
import pytest

from posejax import trainer
from posejax.common.errors import PosejaxError
from posejax.evaluation import runs as eval_lib
from posejax.training import engine
from posejax.workdir import checkpoints as checkpointing
from conftest import tiny_config

TIMING = ("train_time_s", "wall_time_s", "compile_time_s", "eval_time_s")


@pytest.fixture(scope="module")
def data_dir(synthetic_h36m_dir):
  return synthetic_h36m_dir  # read only


@pytest.fixture(scope="module")
def ab_workdir(data_dir, tmp_path_factory):
  """One action-based run, shared: its files are checked, and it is the straight run to resume against."""
  workdir = str(tmp_path_factory.mktemp("ab"))
  summary = trainer.train_and_evaluate(_config(data_dir), workdir)
  return workdir, summary


@pytest.fixture(scope="module")
def common_workdir(data_dir, tmp_path_factory):
  """One common run, shared: its files are checked, and it is the --common of an AB evaluation."""
  workdir = str(tmp_path_factory.mktemp("common"))
  summary = trainer.train_and_evaluate(_config(data_dir, mode="common"), workdir)
  return workdir, summary


def _config(data_dir, mode="action_based", **train):
  """The tiny run config with a tiny action classifier; `train`: config.train fields."""
  return tiny_config(data_dir, mode, **{"classifier.channels": 8, "classifier.epochs": 1},
                     **{f"train.{key}": value for key, value in train.items()})


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def _strip_timing(record):
  return {k: v for k, v in record.items() if k not in TIMING}


def test_action_based_run_writes_the_workdir(ab_workdir):
  workdir, summary = ab_workdir
  assert summary["mode"] == "action_based" and summary["slices"] == ["Eating", "Walking"]
  assert set(summary["steps"]) == {"Eating", "Walking"} and summary["epochs"] == 2
  assert summary["train_time_s"] > 0 and summary["compile_time_s"] > 0
  assert summary["global_steps"] == max(summary["steps"].values())
  records = _records(workdir)
  assert [r["epoch"] for r in records] == [1, 2]
  assert records[-1]["step"] == summary["global_steps"]
  for action in ("Eating", "Walking"):
    entry = records[-1]["per_action"][action]
    assert {"loss", "mpjpe_valid", "mpjve_valid", "lr", "bn_momentum", "action_epoch", "samples",
            "steps"} <= set(entry)
    assert entry["steps"] == summary["steps"][action]
    assert entry["action_epoch"] == pytest.approx(entry["samples"] / summary["examples_per_epoch"][action])
    # 2 own epochs: the second logged lr is that of own epoch index 1 (0.95^1).
    assert entry["lr"] == pytest.approx(1e-3 * 0.95)
  per_action = [records[-1]["per_action"][a]["mpjpe_valid"] for a in ("Eating", "Walking")]
  assert records[-1]["mpjpe_valid_action_mean"] == pytest.approx(np.mean(per_action))
  # The reference's 3d_valid: frame-weighted over all test frames (between the two actions').
  assert min(per_action) <= records[-1]["mpjpe_valid"] <= max(per_action)
  assert records[-1]["mpjpe_valid"] != pytest.approx(np.mean(per_action), rel=1e-9)
  assert records[-1]["loss"] < records[0]["loss"]
  assert glob.glob(os.path.join(workdir, "events.out.tfevents*"))
  with open(os.path.join(workdir, "eval", f"step_{summary['global_steps']}", "final", "results.json")) as f:
    results = json.load(f)
  assert set(results["per_action"]) == {"Eating", "Walking"} and results["tta"] is True
  assert results["checkpoint_final"] is True
  # The action classifier trained in the same run: every routing side by side; the training's
  # headline stays the seed's oracle routing.
  assert list(results["routings"]) == ["oracle", "predicted", "soft"] and results["routing_mode"] == "oracle"
  assert results["classifier"]["classes"] == ["Eating", "Walking"] and results["classifier"]["sequences"] == 32
  assert summary["final"]["average"] == results["routings"]["oracle"]["average"] == results["average"]
  assert os.path.isdir(os.path.join(workdir, "classifier"))
  config, variables, actions, step, meta = checkpointing.restore_for_eval(workdir, "latest")
  assert actions == ["Eating", "Walking"] and step == summary["global_steps"]
  assert variables["params"]["shrink"]["bias"].shape == (2, 51)
  assert meta["model"]["channels"] == 16 and config.model.channels == 16


def test_common_run(common_workdir):
  workdir, summary = common_workdir
  assert summary["slices"] == ["all"] and summary["mesh"] == [1, 1]
  record = _records(workdir)[-1]
  assert {"loss", "lr", "samples"} <= set(record["per_action"]["all"])
  assert {"mpjpe_valid", "mpjve_valid"} <= set(record["per_action"]["Walking"])
  # Common mode: E epochs of all data, whatever unit_epochs says.
  assert summary["own_epochs"] == {"all": 2.0}
  assert not os.path.exists(os.path.join(workdir, "classifier"))  # off by default in common mode


def _tree(root):
  """{relative path: (sha256, mtime_ns)} of every file under `root`."""
  files = {}
  for folder, _, names in os.walk(root):
    for name in names:
      path = os.path.join(folder, name)
      with open(path, "rb") as f:
        files[os.path.relpath(path, root)] = (hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mtime_ns)
  return files


def test_rerun_of_a_finished_run_says_so_and_touches_nothing(data_dir, ab_workdir, common_workdir, capsys):
  workdir, summary = ab_workdir
  step = summary["global_steps"]
  eval_lib.evaluate_workdir(workdir, routing="soft", common_workdir=common_workdir[0], cross_action=True,
                            verbose=False)
  name = f"soft+common-{os.path.basename(common_workdir[0])}+cross_action"
  assert {"final", name} <= set(os.listdir(os.path.join(workdir, "eval", f"step_{step}")))
  before = _tree(workdir)
  capsys.readouterr()
  again = trainer.train_and_evaluate(_config(data_dir), workdir)
  assert _tree(workdir) == before
  assert capsys.readouterr().out == (
      f"--workdir {workdir}: training finished at step {step} (epochs 2); results in "
      f"{workdir}/eval/step_{step}/final (nothing to do; eval.py re-evaluates)\n")
  assert again == json.load(open(os.path.join(workdir, "train_summary.json")))


@pytest.mark.parametrize("input_mode", ["device", "host"])
def test_killed_and_resumed_equals_straight(data_dir, ab_workdir, tmp_path, monkeypatch, input_mode):
  """Killed mid-epoch and resumed == straight; the host tf.data path == the device path."""
  config = _config(data_dir)
  config.train.input = input_mode
  straight, resumed = ab_workdir[0], str(tmp_path / "resumed")

  calls = {"n": 0}
  run_device, run_host = engine.run_segment_device, engine.run_segment_host

  def signalling(run):
    def wrapped(*args, **kwargs):
      def on_chunk(n, inner=kwargs["on_chunk"]):
        calls["n"] += n
        if calls["n"] >= 7 and calls["n"] - n < 7:  # mid-epoch: the accumulators must survive too
          os.kill(os.getpid(), signal.SIGTERM)
        inner(n)
      kwargs["on_chunk"] = on_chunk
      return run(*args, **kwargs)
    return wrapped

  monkeypatch.setattr(engine, "run_segment_device", signalling(run_device))
  monkeypatch.setattr(engine, "run_segment_host", signalling(run_host))
  first = trainer.train_and_evaluate(config, resumed)
  # on_chunk follows completed calls; the call dispatched before that report also runs.
  assert first["interrupted"] and first["step"] == (12 if input_mode == "device" else 8)
  assert not os.path.exists(os.path.join(resumed, "train_summary.json"))
  monkeypatch.setattr(engine, "run_segment_device", run_device)
  monkeypatch.setattr(engine, "run_segment_host", run_host)
  trainer.train_and_evaluate(config, resumed)

  want, got = _records(straight), _records(resumed)
  a = checkpointing.restore_for_eval(straight, "latest")
  b = checkpointing.restore_for_eval(resumed, "latest")
  assert a[3] == b[3]
  if input_mode == "device":
    assert [_strip_timing(r) for r in got] == [_strip_timing(r) for r in want]
    jax.tree.map(np.testing.assert_array_equal, b[1], a[1])
  else:
    # Bit-identical windows; the step compiled alone (host) or in a loop (device) rounds
    # differently in the last float32 bits.
    close = functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-6)
    jax.tree.map(close, [_strip_timing(r) for r in got], [_strip_timing(r) for r in want])
    jax.tree.map(close, b[1], a[1])

  # Resuming with another architecture is refused and says what differs.
  other = _config(data_dir)
  other.model.channels = 32
  with pytest.raises(PosejaxError, match="model channels=16 \\(config: 32\\)"):
    trainer.train_and_evaluate(other, resumed)


def test_missing_data_says_how_to_get_it(tmp_path):
  config = _config(str(tmp_path / "no_data"))
  with pytest.raises(PosejaxError, match="synthetic"):
    trainer.train_and_evaluate(config, str(tmp_path / "w"))


def test_bad_mode(data_dir, tmp_path):
  with pytest.raises(PosejaxError, match="config.mode"):
    trainer.train_and_evaluate(_config(data_dir, mode="per_action"), str(tmp_path / "w"))


EXPECTED_CONFIGS = {  # name: (mode, filter widths, epochs)
    "default": ("common", (3, 3, 3), 60), "quickstart": ("action_based", (3, 3, 3), 1),
    "common1": ("common", (1,), 1), "ab1": ("action_based", (1,), 1),
    "common27": ("common", (3, 3, 3), 1), "ab27": ("action_based", (3, 3, 3), 1),
    "common81": ("common", (3, 3, 3, 3), 80), "ab81": ("action_based", (3, 3, 3, 3), 80),
    "common243": ("common", (3, 3, 3, 3, 3), 80), "ab243": ("action_based", (3, 3, 3, 3, 3), 80)}


@pytest.mark.parametrize("name", sorted(EXPECTED_CONFIGS))
def test_configs(name):
  import importlib
  from posejax.training import schedules
  module = importlib.import_module(f"configs.{name}")
  config = module.get_config()
  assert "python train.py --config configs/" in module.__doc__
  mode, widths, epochs = EXPECTED_CONFIGS[name]
  assert (config.mode, tuple(config.model.filter_widths), config.train.epochs) == (mode, widths, epochs)
  for key in ("actions", "data.dir", "data.keypoints", "model.channels", "train.batch_size", "seed",
              "train.budget", "train.unit_epochs", "eval.tta", "checkpoint.every_epochs", "distributed"):
    node = config
    for part in key.split("."):
      node = node[part]
  budget = schedules.make_budget(config.train.budget, config.mode, config.train.epochs,
                                 config.train.unit_epochs, [1000, 2000], 100)
  if name == "ab243":  # the seed's UE = 1200
    assert budget.epochs.tolist() == [1200, 1200]


def test_a_non_finite_loss_stops_the_run_without_saving(data_dir, tmp_path):
  config = _config(data_dir, lr=1e30)  # parameters overflow within a few steps
  workdir = str(tmp_path / "w")
  with pytest.raises(PosejaxError, match=r"non-finite training loss at global step \d+ in the model of "
                                         r"'(Eating|Walking)'; stopped without saving \(no checkpoint"):
    trainer.train_and_evaluate(config, workdir)
  assert checkpointing.manager(workdir, read_only=True).all_steps() == []


def test_checkpoints_every_minutes_between_log_points(data_dir, ab_workdir, tmp_path, capsys):
  """A timer that is always due saves after every compiled call, between log points; the run
  still ends as the straight run, and a checkpoint between log points records the models' own
  steps short of the log point's target."""
  config = _config(data_dir)
  config.checkpoint.every_minutes = 1e-9
  config.checkpoint.keep = 100
  workdir = str(tmp_path / "timed")
  capsys.readouterr()
  trainer.train_and_evaluate(config, workdir)
  out = capsys.readouterr().out
  assert out.count("INFO: checkpoint at global step") >= 2
  assert [_strip_timing(r) for r in _records(workdir)] == [_strip_timing(r) for r in _records(ab_workdir[0])]
  a = checkpointing.restore_for_eval(ab_workdir[0], "latest")
  b = checkpointing.restore_for_eval(workdir, "latest")
  jax.tree.map(np.testing.assert_array_equal, b[1], a[1])
  timed_steps = sorted(int(os.path.basename(p)) for p in glob.glob(os.path.join(workdir, "checkpoints", "[0-9]*")))
  straight_steps = sorted(int(os.path.basename(p)) for p in glob.glob(os.path.join(ab_workdir[0], "checkpoints",
                                                                                 "[0-9]*")))
  between = sorted(set(timed_steps) - set(straight_steps))
  assert between, "no checkpoint between log points"
  metadata = checkpointing.restore_for_eval(workdir, between[0])[4]
  assert any(own < target for own, target in zip(metadata["model_steps"], metadata["log_point"]["target_steps"]))


def test_checkpoint_timer():
  now = [0.0]
  timer = trainer.CheckpointTimer(2.0, clock=lambda: now[0])
  now[0] = 119.0
  assert not timer.due()
  now[0] = 120.0
  assert timer.due()
  timer.reset()
  assert not timer.due()
  assert not trainer.CheckpointTimer(0.0, clock=lambda: now[0]).due()


def test_a_finished_run_with_a_longer_budget_is_not_finished(data_dir, ab_workdir, tmp_path, capsys):
  """More epochs on a finished workdir are never 'finished': the resume check names them."""
  import shutil
  workdir = str(tmp_path / "longer")
  shutil.copytree(ab_workdir[0], workdir)
  capsys.readouterr()
  with pytest.raises(PosejaxError, match="train.epochs=2 \\(config: 3\\)"):
    trainer.train_and_evaluate(_config(data_dir, epochs=3), workdir)
  assert "training finished at step" not in capsys.readouterr().out
