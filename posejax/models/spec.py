"""The model's specification: its hyper-parameters, where they come from, and the model they build.

Every tool builds its model here, from one dict of hyper-parameters (`hparams`), through its
family (`posejax.models.family`: hparams['family'], absent for the TCN, the only one today):

    filter_widths, channels, causal, dense, dropout   from config.model (the architecture)
    num_joints_in, in_features                        from the 2D data: K keypoints of F features
    num_joints_out                                    from the skeleton (17 for Human3.6M)

Training takes them from the config and the data (`from_config`) and records them in every
checkpoint (metadata['model']); evaluation, inference, export and streaming take them from
the checkpoint (`from_checkpoint`), so a config passed at evaluation time (`--config`, with
other overrides or another keypoint source) can never build a model that does not match the
weights: the recorded architecture wins, a differing config is reported (`config_differences`)
and data of another shape is a one-line error (`check_input`). Checkpoints of older versions
lack some fields (in_features): they are read off the weights' shapes.

The compute dtype (config.model.compute_dtype) is a training option only: evaluation runs in
float32.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from posejax.common.errors import PosejaxError
from posejax.config.run_config import ModelConfig, TrainConfig
from posejax.data.dataset import PoseDataset
from posejax.models import family as model_family, videopose3d
from posejax.models.family import PoseModel

ARCHITECTURE = videopose3d.ARCHITECTURE
CONFIG_FIELDS = ARCHITECTURE + ("dropout",)
FIELDS = model_family.TCN.fields
DTYPES = ("float32", "bfloat16")


def _typed(hparams: Mapping[str, Any]) -> dict[str, Any]:
  """hparams with plain Python types (JSON-ready, comparable with a checkpoint's record); the
  family of a record without one is the TCN (`family.of_hparams`)."""
  return {"family": model_family.of_hparams(hparams).name, "filter_widths": [int(w) for w in hparams["filter_widths"]], "channels": int(hparams["channels"]),
          "causal": bool(hparams["causal"]), "dense": bool(hparams["dense"]), "dropout": float(hparams["dropout"]),
          "num_joints_in": int(hparams["num_joints_in"]), "in_features": int(hparams["in_features"]),
          "num_joints_out": int(hparams["num_joints_out"])}


def compute_dtype(model: ModelConfig) -> str:
  """model.compute_dtype, checked; training only."""
  dtype = model.compute_dtype
  if dtype not in DTYPES:
    raise PosejaxError(f"--config.model.compute_dtype: {dtype!r} is not one of {', '.join(DTYPES)}")
  return dtype


def input_shape(dataset: PoseDataset, *others: PoseDataset | None) -> tuple[int, int]:
  """(K keypoints, F features) of every 2D frame of `dataset` (F = 2, or more: x, y, confidence...).

  `others` (e.g. the test split; None entries are skipped) must have the same frames.
  """
  shapes = sorted({tuple(r.poses_2d.shape[1:]) for r in dataset.sequences})
  if not shapes:
    raise PosejaxError(f"{dataset.source}: no 2D sequences")
  if len(shapes) > 1:
    raise PosejaxError(f"{dataset.source}: 2D sequences of different shapes per frame {shapes} "
                       "(every sequence needs the same keypoints and features)")
  (k, f), = shapes
  if f < 2:
    raise PosejaxError(f"{dataset.source}: {f} feature(s) per keypoint; need at least x and y")
  for other in others:
    if other is not None:
      check_input({"num_joints_in": k, "in_features": f}, *input_shape(other),
                  where=f"{other.source}: subjects {', '.join(other.subjects)}",
                  what=f"those of subjects {', '.join(dataset.subjects)} are")
  return int(k), int(f)


def training_form(train: TrainConfig, model: ModelConfig) -> tuple[int, bool]:
  """(chunk length, whether the dilated model trains) of the train piece (reference V8.6).

  The strided model trains on one-frame examples; the reference's --stride (train.stride > 1:
  chunks of that many output frames) and --disable-optimizations (train.dense_training) train
  the dilated one, as does the dense variant (which has no strided form).
  """
  stride = train.stride
  if not 1 <= stride <= train.batch_size:
    raise PosejaxError(f"--config.train.stride={stride}: must be between 1 and --config.train.batch_size "
                       f"({train.batch_size}): a batch holds batch_size // stride chunks")
  return stride, stride > 1 or train.dense_training or model.dense


def from_config(model: ModelConfig, *, num_keypoints: int, in_features: int = 2, num_joints: int = 17
                ) -> dict[str, Any]:
  """hparams of the model piece for inputs of `num_keypoints` x `in_features` and `num_joints` outputs."""
  return _typed({"family": model_family.get(model.family).name, "filter_widths": model.filter_widths,
                 "channels": model.channels, "causal": model.causal,
                 "dense": model.dense, "dropout": model.dropout, "num_joints_in": num_keypoints,
                 "in_features": in_features, "num_joints_out": num_joints})


def of_model(model: PoseModel) -> dict[str, Any]:
  """hparams of a built model (e.g. one read off a PyTorch state dict)."""
  return _typed({name: getattr(model, name) for name in FIELDS})


def _shapes(variables: Any) -> tuple[tuple[int, ...], tuple[int, ...], int]:
  """(expand_conv kernel (W, K*F, C), shrink kernel (1, C, J*3), residual blocks) of possibly
  stacked variables (a leading slice axis is ignored)."""
  params = variables["params"]
  expand = tuple(np.shape(params["expand_conv"]["kernel"])[-3:])
  shrink = tuple(np.shape(params["shrink"]["kernel"])[-3:])
  blocks = sum(1 for name in params if name.startswith("layers_conv_")) // 2
  return expand, shrink, blocks


def from_checkpoint(recorded: Mapping[str, Any] | None, model: ModelConfig, variables: Any, where: str
                    ) -> dict[str, Any]:
  """hparams of a checkpoint: its record (metadata['model']) first, then the weights' shapes,
  then the config for what neither holds (checkpoints of older versions).

  Args:
    recorded: metadata['model'] of the checkpoint (None or partial for older ones).
    model: the model piece of the config the run was restored with.
    variables: the checkpoint's {'params', ...} (stacked or not).
    where: names the checkpoint in errors.
  Raises:
    PosejaxError: the weights do not fit the recorded or configured architecture.
  """
  recorded = dict(recorded or {})
  (width, inputs, channels), (_, shrink_in, outputs), blocks = _shapes(variables)
  merged: dict[str, Any] = {"family": model_family.of_hparams(recorded).name}  # the record's, never the config's
  for name in CONFIG_FIELDS:
    if name in recorded:
      merged[name] = recorded[name]
    elif name == "channels":
      merged[name] = channels
    else:
      merged[name] = getattr(model, name)
  features = int(recorded.get("in_features", 2))
  merged["in_features"] = features
  merged["num_joints_in"] = recorded.get("num_joints_in", inputs // features)
  merged["num_joints_out"] = recorded.get("num_joints_out", outputs // 3)
  hparams = _typed(merged)
  widths = hparams["filter_widths"]
  expected = {"first filter width": (widths[0], width), "residual blocks": (len(widths) - 1, blocks),
              "channels": (hparams["channels"], channels), "shrink inputs": (hparams["channels"], shrink_in),
              "input channels (keypoints x features)": (hparams["num_joints_in"] * features, inputs),
              "outputs (joints x 3)": (hparams["num_joints_out"] * 3, outputs)}
  wrong = [f"{name} {want} (weights: {got})" for name, (want, got) in expected.items() if want != got]
  if wrong:
    raise PosejaxError(f"{where}: the weights do not fit the model {describe(hparams)}: {'; '.join(wrong)}")
  return hparams


def normalized_record(recorded: Mapping[str, Any] | None) -> dict[str, Any]:
  """A checkpoint's metadata['model'] as this version records it (older ones lack in_features).

  A record without 'family' is a TCN's (`family.of_hparams`).
  """
  out = dict(recorded or {})
  if out and "in_features" not in out:
    out["in_features"] = 2
  if out and "family" not in out:
    out["family"] = model_family.of_hparams(out).name
  return out


def config_differences(hparams: Mapping[str, Any], model: ModelConfig) -> list[str]:
  """'model.channels=32 (checkpoint: 16)' for every architecture field the config sets otherwise."""
  out = []
  for name in ARCHITECTURE:
    value = [int(w) for w in getattr(model, name)] if name == "filter_widths" else getattr(model, name)
    if value != hparams[name]:
      out.append(f"model.{name}={value} (checkpoint: {hparams[name]})")
  return out


def describe(hparams: Mapping[str, Any]) -> str:
  return (f"(filter widths {list(hparams['filter_widths'])}, {hparams['channels']} channels, "
          f"{hparams['num_joints_in']} keypoints x {hparams['in_features']} features in, "
          f"{hparams['num_joints_out']} joints out{', causal' if hparams['causal'] else ''}"
          f"{', dense' if hparams['dense'] else ''})")


def check_input(hparams: Mapping[str, Any], num_keypoints: int, in_features: int, where: str,
                what: str = "the checkpoint's model takes") -> None:
  """Raises PosejaxError when 2D frames of `num_keypoints` x `in_features` do not fit the model."""
  want = (hparams["num_joints_in"], hparams["in_features"])
  if (int(num_keypoints), int(in_features)) != want:
    raise PosejaxError(f"{where}: {num_keypoints} keypoints x {in_features} features per frame; {what} "
                       f"{want[0]} x {want[1]} (use the 2D source of the same layout)")


def build(hparams: Mapping[str, Any], *, strided: bool = False, dtype: str = "float32") -> PoseModel:
  """The model of `hparams`, built by its family: the dilated form (evaluation, and training on
  chunks or with `train.dense_training`) or the strided one (one-frame training examples,
  reference V8.6; the dense variant has none). `dtype`: the compute dtype (training only)."""
  return model_family.of_hparams(hparams).build(hparams, strided=strided, dtype=dtype)
