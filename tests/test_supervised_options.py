"""The reference's remaining supervised options, end to end on tiny synthetic data: --subset and
--downsample, --stride (chunked training) and --disable-optimizations, 2D inputs with a third
feature, --resume from a named checkpoint, and the data-order seed."""

import hashlib
import json
import os
import shutil

import jax
import numpy as np
import pytest

from posejax import trainer
from posejax.common.errors import PosejaxError
from posejax.data import h36m, loading, subset
from posejax.evaluation import runs as eval_lib
from posejax.training import sampling
from posejax.workdir import checkpoints as checkpointing, layout, resume
from pieces import data_args, pieces
from conftest import tiny_config

TIMING = ("train_time_s", "wall_time_s", "compile_time_s", "eval_time_s")


@pytest.fixture(scope="module")
def data_dir(synthetic_h36m_dir, tmp_path_factory):
  """A private copy of the shared synthetic data: the confidence tests add a 2D source to it."""
  path = str(tmp_path_factory.mktemp("synthetic") / "data")
  shutil.copytree(synthetic_h36m_dir, path)
  return path


def _config(data_dir, mode="common", **train):
  """The tiny run config; `train`: config.train fields."""
  return tiny_config(data_dir, mode, **{f"train.{key}": value for key, value in train.items()})


def _variables(workdir, which="latest"):
  return checkpointing.restore_for_eval(workdir, which)[1]


def _records(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in f]


# --- --subset and --downsample ---------------------------------------------------------------


def reference_deterministic_random(min_value, max_value, data):
  """run.py's deterministic_random: SHA-256, first 4 bytes little-endian, scaled to the range."""
  raw = np.frombuffer(hashlib.sha256(data.encode()).digest()[:4], dtype="<u4")[0]
  return int(raw / (2**32 - 1) * (max_value - min_value)) + min_value


def reference_fetch(poses, subset_fraction, stride):
  """run.py's fetch, temporal part (reference V6.5 step 3), on one sequence."""
  if subset_fraction < 1:
    n_frames = int(round(len(poses) // stride * subset_fraction) * stride)
    start = reference_deterministic_random(0, len(poses) - n_frames + 1, str(len(poses)))
    return poses[start:start + n_frames:stride]
  return poses[::stride] if stride > 1 else poses


def test_deterministic_random_and_frame_ranges_are_the_references():
  for data in ("0", "1383", "2356", "abc", "Walking 1"):
    for lo, hi in ((0, 1), (0, 7), (3, 1000), (0, 2**20)):
      assert subset.deterministic_random(lo, hi, data) == reference_deterministic_random(lo, hi, data)
  starts = {subset.deterministic_random(0, 100, str(n)) for n in range(50)}
  assert len(starts) > 30  # a hash, not a constant
  for length in range(1, 120):
    frames = np.arange(length)
    for fraction in (0.1, 0.25, 0.5, 0.9, 1.0):
      for stride in (1, 2, 3):
        np.testing.assert_array_equal(frames[subset.frame_range(length, fraction, stride)],
                                      reference_fetch(frames, fraction, stride))
  with pytest.raises(PosejaxError, match="data.subset"):
    subset.check_options(0.0, 1)
  with pytest.raises(PosejaxError, match="data.downsample"):
    subset.check_options(1.0, 0)


def test_load_data_subsets_training_and_downsamples_both(data_dir):
  full_train, full_test, fingerprint = loading.load_data(*data_args(_config(data_dir)), ("Eating", "Walking"))
  config = _config(data_dir)
  config.data.subset, config.data.downsample = 0.3, 2
  train, test, same = loading.load_data(*data_args(config), ("Eating", "Walking"))
  assert same == fingerprint
  assert len(train.sequences) == len(full_train.sequences) and len(test.sequences) == len(full_test.sequences)
  for got, full in zip(train.sequences, full_train.sequences):
    np.testing.assert_array_equal(got.poses_2d, reference_fetch(full.poses_2d, 0.3, 2))
    np.testing.assert_array_equal(got.poses_3d, reference_fetch(full.poses_3d, 0.3, 2))
    assert 0 < got.num_frames < full.num_frames // 2
  for got, full in zip(test.sequences, full_test.sequences):  # no subset on the test data
    np.testing.assert_array_equal(got.poses_2d, full.poses_2d[::2])
    np.testing.assert_array_equal(got.poses_3d, full.poses_3d[::2])


# --- --stride and --disable-optimizations ---------------------------------------------------


def test_chunked_training_counts_chunks_and_host_equals_device(data_dir, tmp_path):
  """stride 4: batch 32 // 4 = 8 chunks of 4 frames, the dilated model on 4 + RF - 1 = 6 frames;
  epochs count chunks (ceil(L / 4) per sequence, twice with flips); tf.data == device windows."""
  summaries = {}
  for input_mode in ("device", "host"):
    config = _config(data_dir, stride=4, input=input_mode)
    summaries[input_mode] = trainer.train_and_evaluate(config, str(tmp_path / input_mode))
  summary = summaries["device"]
  train, _, _ = loading.load_data(*data_args(config), ("Eating", "Walking"))
  chunks = 2 * sum(-(-r.num_frames // 4) for r in train.sequences)
  assert chunks < train.frames()  # not the frame count
  assert summary["examples_per_epoch"] == {"all": chunks} and summary["steps"] == {"all": -(-2 * chunks // 8)}
  assert (summary["stride"], summary["batch_size"], summary["train_model"]) == (4, 8, "dilated")
  records = _records(str(tmp_path / "device"))
  assert records[-1]["loss"] < records[0]["loss"] and np.isfinite(records[-1]["mpjpe_valid"])
  # Bit-identical windows; the step compiled alone (host) or in a loop (device) may round differently.
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
               _variables(str(tmp_path / "host")), _variables(str(tmp_path / "device")))


def test_dense_training_trains_the_dilated_form_on_the_same_windows(data_dir, tmp_path):
  """--disable-optimizations: the dilated model at stride 1 (RF-frame windows, same initial weights);
  in evaluation mode it computes what the strided model computes."""
  strided = trainer.Run(pieces(_config(data_dir, mode="action_based")), str(tmp_path / "a"))
  dilated = trainer.Run(pieces(_config(data_dir, mode="action_based", dense_training=True)), str(tmp_path / "b"))
  assert strided.engine.model.strided and not dilated.engine.model.strided
  assert dilated.engine.spec.window_frames == strided.engine.spec.window_frames == strided.rf
  state_a, state_b = jax.jit(strided.init_fn)(), jax.jit(dilated.init_fn)()
  jax.tree.map(np.testing.assert_array_equal, state_a.params, state_b.params)
  batch = sampling.device_batch(jax.device_put(strided.table.arrays()), strided.engine.spec,
                                np.array([0, 1], np.int32), np.array([0, 3], np.int32))
  for k in range(2):
    variables = jax.tree.map(lambda x: x[k], state_a.variables)
    outputs = [jax.jit(lambda v, x, m=run.engine.model: m.apply(v, x, train=False))(variables, batch["poses_2d"][k])
               for run in (strided, dilated)]
    assert outputs[0].shape == batch["poses_3d"][k].shape
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-5, atol=1e-6)
  with pytest.raises(PosejaxError, match="train.stride=64"):
    trainer.Run(pieces(_config(data_dir, stride=64)), str(tmp_path / "c"))


# --- 2D inputs with a confidence feature ----------------------------------------------------


def _write_confidence_source(data_dir):
  """data_2d_h36m_synthconf.npz: the 'synthetic' detections with a confidence per keypoint."""
  path = os.path.join(data_dir, "data_2d_h36m_synthconf.npz")
  if not os.path.exists(path):
    with np.load(os.path.join(data_dir, "data_2d_h36m_synthetic.npz"), allow_pickle=True) as f:
      positions, metadata = f["positions_2d"].item(), f["metadata"].item()
    rng = np.random.default_rng(0)
    with_conf = {s: {n: [np.concatenate([k, rng.uniform(0.2, 1.0, k.shape[:2] + (1,))], -1).astype(np.float32)
                         for k in cams] for n, cams in seqs.items()} for s, seqs in positions.items()}
    np.savez_compressed(path, positions_2d=np.array(with_conf, dtype=object), metadata=np.array(metadata, dtype=object))
  return path


def test_three_features_per_keypoint_train_evaluate_and_downsample(data_dir, tmp_path):
  """(x, y, confidence) inputs: only x, y normalized; in_features 3 recorded and built by the
  evaluation; the test data downsampled (--downsample 2) in training and in eval.py alike."""
  path = _write_confidence_source(data_dir)
  plain = h36m.load_h36m(data_dir, "synthetic", ["S9"], ["Walking"])
  conf = h36m.load_h36m(data_dir, "synthconf", ["S9"], ["Walking"])
  with np.load(path, allow_pickle=True) as f:
    raw = f["positions_2d"].item()["S9"]
  for a, b in zip(plain.sequences, conf.sequences):
    np.testing.assert_array_equal(b.poses_2d[..., :2], a.poses_2d)
    np.testing.assert_array_equal(b.poses_2d[..., 2], raw[b.name][b.camera][:b.num_frames, :, 2])
  config = _config(data_dir)
  config.data.keypoints, config.data.downsample = "synthconf", 2
  workdir = str(tmp_path / "conf")
  summary = trainer.train_and_evaluate(config, workdir)
  _, _, _, step, meta = checkpointing.restore_for_eval(workdir)
  assert meta["model"]["in_features"] == 3 and meta["model"]["num_joints_in"] == 17
  assert _variables(workdir)["params"]["expand_conv"]["kernel"].shape == (1, 3, 17 * 3, 16)
  _, test, _ = loading.load_data(*data_args(_config(data_dir)), ("Eating", "Walking"))
  with open(os.path.join(workdir, "eval", f"step_{step}", "final", "results.json")) as f:
    final = json.load(f)
  assert final["frames"]["total"] == sum(-(-r.num_frames // 2) for r in test.sequences)
  again = eval_lib.evaluate_workdir(workdir, out_dir=str(tmp_path / "again"), verbose=False)
  assert again["frames"] == final["frames"]
  for metric, value in final["average"].items():
    assert again["average"][metric] == pytest.approx(value, rel=1e-4)
  assert summary["final"]["average"]["mpjpe"] == pytest.approx(final["average"]["mpjpe"])
  two_features = _config(data_dir)  # the 2-feature source: the model cannot read it
  with pytest.raises(PosejaxError, match="2D source 'synthetic': 17 keypoints x 2 features per frame; the "
                     "checkpoint's model takes 17 x 3"):
    eval_lib.evaluate_workdir(workdir, config=two_features, verbose=False)


# --- --resume from a named checkpoint ---------------------------------------------------------


def test_resume_from_a_named_step_or_another_workdir(data_dir, tmp_path, capsys):
  straight = str(tmp_path / "straight")
  trainer.train_and_evaluate(_config(data_dir), straight)
  first, last = sorted(checkpointing.manager(straight, read_only=True).all_steps())
  want_records, want = _records(straight), _variables(straight)

  # A step of this workdir: the later checkpoint is moved aside, training goes on from the step.
  config = _config(data_dir)
  config.checkpoint.resume_from = str(first)
  capsys.readouterr()
  trainer.train_and_evaluate(config, straight)
  out = capsys.readouterr().out
  assert f"resuming from step {first}" in out and resume.SUPERSEDED_DIR in out
  assert os.path.isdir(os.path.join(straight, resume.SUPERSEDED_DIR, str(last)))
  assert _records(straight) == want_records
  jax.tree.map(np.testing.assert_array_equal, _variables(straight), want)

  # A path into a fresh workdir: the same end; the run starts at that step.
  branch = str(tmp_path / "branch")
  config.checkpoint.resume_from = os.path.join(straight, "checkpoints", str(first))
  trainer.train_and_evaluate(config, branch)
  jax.tree.map(np.testing.assert_array_equal, _variables(branch), want)
  assert _records(branch) == want_records[1:]
  assert f"starting from step {first} of {layout.checkpoint_dir(straight)}" in capsys.readouterr().out
  trainer.train_and_evaluate(config, branch)  # has its own, finished checkpoints now: they win
  assert f"--workdir {branch}: training finished at step {last}" in capsys.readouterr().out

  config.checkpoint.resume_from = "999"
  with pytest.raises(PosejaxError, match=f"no checkpoint at step 999 \\(available: {first}, {last}\\)"):
    trainer.train_and_evaluate(config, straight)
  config.checkpoint.resume_from = str(tmp_path / "nowhere")
  with pytest.raises(PosejaxError, match="resume_from=.*nowhere: not a step number and no such directory"):
    trainer.train_and_evaluate(config, straight)


# --- The data-order seed and the weights' seed ------------------------------------------------


def _order_and_weights(data_dir, tmp_path, seed, shuffle_seed):
  config = _config(data_dir)
  config.seed, config.data.shuffle_seed = seed, shuffle_seed
  run = trainer.Run(pieces(config), str(tmp_path))
  where = sampling.example_indices(jax.device_put(run.table.arrays()), run.engine.spec,
                                   np.zeros(3, np.int32), np.arange(3, dtype=np.int32))
  order = np.stack([np.asarray(where["frame"]), np.asarray(where["flip"])])
  return order, jax.jit(run.init_fn)().params


def test_shuffle_seed_sets_the_order_and_seed_the_weights(data_dir, tmp_path):
  order, weights = _order_and_weights(data_dir, tmp_path, 1, 5)
  other_order, same_weights = _order_and_weights(data_dir, tmp_path, 1, 6)
  same_order, other_weights = _order_and_weights(data_dir, tmp_path, 2, 5)
  assert not np.array_equal(order, other_order)
  jax.tree.map(np.testing.assert_array_equal, weights, same_weights)
  np.testing.assert_array_equal(order, same_order)
  assert not np.array_equal(weights["expand_conv"]["kernel"], other_weights["expand_conv"]["kernel"])


def test_resume_sources_and_earlier_checkpoints(tmp_path):
  workdir = tmp_path / "w"
  (workdir / "checkpoints" / "40").mkdir(parents=True)
  here = str(tmp_path / "here")
  assert resume.parse(None, here) is None and resume.parse("", here) is None
  assert resume.parse(12, here) == resume.Source(here, 12, own=True)
  assert resume.parse(str(workdir / "checkpoints" / "40"), here) == resume.Source(str(workdir), 40, own=False)
  assert resume.parse(str(workdir / "checkpoints"), here) == resume.Source(str(workdir), None, own=False)
  assert resume.parse(str(workdir), str(workdir)) == resume.Source(str(workdir), None, own=True)
  with pytest.raises(PosejaxError, match="not a checkpoint step"):
    resume.parse(str(tmp_path), here)
  # Checkpoints of earlier versions record none of the new options: they trained with their defaults.
  saved = {"config": {"data": {"keypoints": "gt"}, "train": {"lr": 0.001}}, "model": {"channels": 8}}
  current = resume.as_current(saved)
  assert current["config"]["data"] == {"subset": 1.0, "downsample": 1, "keypoints": "gt"}
  assert current["config"]["train"] == {"stride": 1, "dense_training": False, "lr": 0.001}
  assert current["model"] == {"channels": 8, "in_features": 2, "family": "tcn"}  # a TCN, as every earlier one
