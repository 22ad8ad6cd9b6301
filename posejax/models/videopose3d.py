"""VideoPose3D's temporal convolutional network as a model family: its hyper-parameters and
the import of its reference PyTorch checkpoints (`.bin`).

A checkpoint is a `torch.save` dict with `model_pos` (a state dict, reference V8.8),
optionally `model_traj` (a state dict, or None in supervised checkpoints: the
reference quirk V17.1), `epoch` and `lr`. The architecture is read off the
tensor shapes; the result is the dilated (evaluation) form of `TemporalModel`.
The command line and the workdir writing are `posejax.tools.interop`'s; torch is imported
only when a checkpoint is read (an optional heavy dependency).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from posejax.common.errors import PosejaxError
from posejax.models.tcn import TemporalModel, pads

ARCHITECTURE = ("filter_widths", "channels", "causal", "dense")
FIELDS = ARCHITECTURE + ("dropout", "num_joints_in", "in_features", "num_joints_out")


def build(hparams: Mapping[str, Any], *, strided: bool = False, dtype: str = "float32") -> TemporalModel:
  """The TCN of `hparams` (FIELDS): the dilated form, or the strided one (one-frame training
  examples, reference V8.6; the dense variant has none). `dtype`: the compute dtype."""
  dense = bool(hparams["dense"])
  return TemporalModel(num_joints_in=int(hparams["num_joints_in"]), in_features=int(hparams["in_features"]),
                       num_joints_out=int(hparams["num_joints_out"]),
                       filter_widths=tuple(int(w) for w in hparams["filter_widths"]),
                       causal=bool(hparams["causal"]), dropout=float(hparams["dropout"]),
                       channels=int(hparams["channels"]), dense=dense, strided=strided and not dense, dtype=dtype)


def hparams_of(model: TemporalModel) -> dict[str, Any]:
  """FIELDS of a built model, as plain Python values (JSON-ready)."""
  return {"filter_widths": [int(w) for w in model.filter_widths], "channels": int(model.channels),
          "causal": bool(model.causal), "dense": bool(model.dense), "dropout": float(model.dropout),
          "num_joints_in": int(model.num_joints_in), "in_features": int(model.in_features),
          "num_joints_out": int(model.num_joints_out)}


_TORCH_HINT = "requires PyTorch: pip install -e .[torch] (torch==2.13.0)"


@dataclasses.dataclass(frozen=True)
class VideoPose3DImport:
  """Models and variables read from one VideoPose3D checkpoint.

  `variables_*` are `{'params': ..., 'batch_stats': ...}` for the dilated model;
  the trajectory entries are None when the checkpoint holds no trajectory model.
  """
  model_pos: TemporalModel
  variables_pos: dict[str, Any]
  model_traj: TemporalModel | None
  variables_traj: dict[str, Any] | None
  epoch: int | None
  lr: float | None


def _name_table(blocks: int) -> list[tuple[str, str, str, str]]:
  """(torch key, flax collection, flax module, flax leaf) for a model with `blocks` residual blocks."""
  table = [("expand_conv.weight", "params", "expand_conv", "kernel")]
  bns = [("expand_bn", "expand_bn")] + [(f"layers_bn.{k}", f"layers_bn_{k}") for k in range(2 * blocks)]
  table += [(f"layers_conv.{k}.weight", "params", f"layers_conv_{k}", "kernel") for k in range(2 * blocks)]
  for torch_name, flax_name in bns:
    table += [(f"{torch_name}.weight", "params", flax_name, "scale"),
              (f"{torch_name}.bias", "params", flax_name, "bias"),
              (f"{torch_name}.running_mean", "batch_stats", flax_name, "mean"),
              (f"{torch_name}.running_var", "batch_stats", flax_name, "var")]
  table += [("shrink.weight", "params", "shrink", "kernel"), ("shrink.bias", "params", "shrink", "bias")]
  return table


def _widths_from_kernels(kernels: Sequence[int], dense: bool) -> tuple[int, ...]:
  """Filter widths from `expand_conv` and every conv-A kernel size (reference V8.4 for dense)."""
  widths = [kernels[0]]
  for k in kernels[1:]:
    if dense:  # kernel = (w - 1) * d + 1 with d the product of the earlier widths
      d = int(np.prod(widths))
      widths.append((k - 1) // d + 1 if (k - 1) % d == 0 else -1)
    else:
      widths.append(k)
  return tuple(widths)


def model_from_state_dict(state_dict: Mapping[str, Any], *, source: str = "state dict",
                          filter_widths: Sequence[int] | None = None, causal: bool = False,
                          dropout: float = 0.25, in_features: int = 2, dense: bool = False
                          ) -> tuple[TemporalModel, dict[str, Any]]:
  """Builds the dilated model and its variables from a VideoPose3D state dict.

  Args:
    state_dict: torch key -> array-like (torch tensors or NumPy arrays).
    source: name used in error messages (the file).
    filter_widths: expected widths; checked against the tensor shapes when given.
    causal, dropout: not recorded in a state dict; taken as given.
    in_features: features per input keypoint (2 for 2D keypoints).
    dense: the checkpoint is the dense ablation variant (conv-A kernels span a block's receptive field).

  Raises:
    PosejaxError: keys or shapes do not form a VideoPose3D model.
  """
  # A copy: .numpy() shares the tensor's memory, which a later in-place update would change.
  arrays = {k: np.array(v.detach().cpu().numpy() if hasattr(v, "detach") else v, copy=True)
            for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}
  for key in ("expand_conv.weight", "shrink.weight", "shrink.bias"):
    if key not in arrays:
      raise PosejaxError(f"{source}: not a VideoPose3D model state dict (missing {key})")
  channels, in_channels, w0 = arrays["expand_conv.weight"].shape
  if in_channels % in_features:
    raise PosejaxError(f"{source}: expand_conv has {in_channels} input channels, not a multiple of "
                       f"in_features={in_features}")
  blocks = sum(1 for k in arrays if k.startswith("layers_conv.") and k.endswith(".weight")) // 2
  kernels = [w0]
  for m in range(blocks):
    if f"layers_conv.{2 * m}.weight" not in arrays:
      raise PosejaxError(f"{source}: not a VideoPose3D model state dict (missing layers_conv.{2 * m}.weight)")
    kernels.append(arrays[f"layers_conv.{2 * m}.weight"].shape[2])
  widths = _widths_from_kernels(kernels, dense)
  if filter_widths is not None and tuple(filter_widths) != widths:
    raise PosejaxError(f"{source}: checkpoint has filter widths {list(widths)}, "
                       f"not the requested {list(filter_widths)}")
  if any(w < 1 or w % 2 == 0 for w in widths):
    raise PosejaxError(f"{source}: kernel sizes {kernels} do not give odd filter widths (dense={dense})")
  joints_out, rem = divmod(arrays["shrink.weight"].shape[0], 3)
  if rem:
    raise PosejaxError(f"{source}: shrink has {arrays['shrink.weight'].shape[0]} outputs, not 3 per joint")
  model = build({"filter_widths": widths, "channels": channels, "causal": causal, "dense": dense,
                            "dropout": dropout, "num_joints_in": in_channels // in_features,
                            "in_features": in_features, "num_joints_out": joints_out})
  return model, _variables_from_arrays(arrays, model, source)


def _variables_from_arrays(arrays: dict[str, np.ndarray], model: TemporalModel,
                           source: str) -> dict[str, Any]:
  """Checks every shape against the model and converts names and layouts."""
  c, j3 = model.channels, model.num_joints_out * 3
  blocks = len(model.filter_widths) - 1
  conv_a = [2 * p + 1 if model.dense else w
            for p, w in zip(pads(model.filter_widths), model.filter_widths)]
  expected = {"expand_conv.weight": (c, model.num_joints_in * model.in_features, model.filter_widths[0]),
              "shrink.weight": (j3, c, 1), "shrink.bias": (j3,)}
  for m in range(blocks):
    expected[f"layers_conv.{2 * m}.weight"] = (c, c, conv_a[m + 1])
    expected[f"layers_conv.{2 * m + 1}.weight"] = (c, c, 1)
  variables: dict[str, Any] = {"params": {}, "batch_stats": {}}
  table = _name_table(blocks)
  for torch_key, collection, module, leaf in table:
    if torch_key not in arrays:
      raise PosejaxError(f"{source}: not a VideoPose3D model state dict (missing {torch_key})")
    value = arrays[torch_key]
    want = expected.get(torch_key, (c,))
    if value.shape != want:
      raise PosejaxError(f"{source}: {torch_key} has shape {value.shape}, expected {want}")
    if leaf == "kernel":
      value = value.transpose(2, 1, 0)  # torch (out, in, width) -> flax (width, in, out)
    variables[collection].setdefault(module, {})[leaf] = jnp.asarray(value, jnp.float32)
  unknown = sorted(set(arrays) - {row[0] for row in table})
  if unknown:
    raise PosejaxError(f"{source}: unexpected keys for a VideoPose3D model: {', '.join(unknown[:5])}")
  return variables


def torch_state_dict_from_variables(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """Inverse of the import: posejax variables -> VideoPose3D state dict of NumPy arrays.

  Conv kernels go back to torch's (out, in, width) layout; `num_batches_tracked` is not produced.
  """
  blocks = sum(1 for name in variables["params"] if name.startswith("layers_conv_")) // 2
  return {torch_key: (np.asarray(variables[collection][module][leaf]).transpose(2, 1, 0) if leaf == "kernel"
                      else np.asarray(variables[collection][module][leaf]))
          for torch_key, collection, module, leaf in _name_table(blocks)}


def _safe_globals() -> list[Any]:
  """NumPy objects VideoPose3D checkpoints pickle next to the weights (`random_state`, `lr`).

  Allowed by name, so the file is read with torch's weights-only unpickler and
  cannot run arbitrary code. Old NumPy spelled some of them differently.
  """
  multiarray = np._core.multiarray
  return [multiarray._reconstruct, (multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
          multiarray.scalar, (multiarray.scalar, "numpy.core.multiarray.scalar"),
          np.ndarray, np.dtype, *(type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFDG"),
          np.random.mtrand.RandomState, np.random._mt19937.MT19937,
          np.random._pickle.__randomstate_ctor, np.random._pickle.__bit_generator_ctor,
          (np.random._pickle.__randomstate_ctor, "numpy.random.__RandomState_ctor")]


def _error_detail(e: Exception) -> tuple[str, bool]:
  """(informative line of a torch.load error, whether the weights-only reader refused an object)."""
  lines = [line.strip() for line in str(e).splitlines() if line.strip()]
  for line in lines:
    if "Unsupported global" in line or "Can only build" in line:
      return line.split(". Please")[0].replace("WeightsUnpickler error: ", ""), True
  return f"{type(e).__name__}: {lines[0] if lines else ''}"[:200], False


def _read_checkpoint(path: str, trust_pickle: bool) -> dict[str, Any]:
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise PosejaxError(f"{path}: reading VideoPose3D checkpoints {_TORCH_HINT}") from None
  if not os.path.isfile(path):
    raise PosejaxError(f"{path}: file not found")
  try:
    with torch.serialization.safe_globals(_safe_globals()):
      checkpoint = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
  except Exception as e:  # torch raises many types for a foreign or damaged file
    detail, refused = _error_detail(e)
    hint = " (if the file is trusted, retry with trust_pickle=True / --trust-pickle)" if refused else ""
    raise PosejaxError(f"{path}: not a readable PyTorch checkpoint: {detail}{hint}") from None
  if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("model_pos"), Mapping):
    raise PosejaxError(f"{path}: not a VideoPose3D checkpoint (no 'model_pos' state dict)")
  return dict(checkpoint)


def load_videopose3d(path: str, *, filter_widths: Sequence[int] | None = None, causal: bool = False,
                     dropout: float = 0.25, in_features: int = 2, dense: bool = False,
                     trust_pickle: bool = False) -> VideoPose3DImport:
  """Reads a VideoPose3D `.bin` checkpoint: pose model, trajectory model when present, epoch, lr.

  `trust_pickle=True` lets torch unpickle arbitrary objects (only for trusted
  files whose extra entries the weights-only reader refuses).

  Raises:
    PosejaxError: torch missing, file missing/unreadable, or not a VideoPose3D checkpoint.
  """
  checkpoint = _read_checkpoint(path, trust_pickle)
  kwargs = dict(filter_widths=filter_widths, causal=causal, dropout=dropout, in_features=in_features,
                dense=dense)
  model_pos, variables_pos = model_from_state_dict(checkpoint["model_pos"], source=f"{path} model_pos",
                                                   **kwargs)
  model_traj = variables_traj = None
  traj = checkpoint.get("model_traj")
  if traj is not None:  # supervised checkpoints store None here (reference V17.1)
    model_traj, variables_traj = model_from_state_dict(traj, source=f"{path} model_traj", **kwargs)
  epoch, lr = checkpoint.get("epoch"), checkpoint.get("lr")
  return VideoPose3DImport(model_pos, variables_pos, model_traj, variables_traj,
                           None if epoch is None else int(epoch), None if lr is None else float(lr))


def from_videopose3d(path: str, *, filter_widths: Sequence[int] | None = None, causal: bool = False,
                     dropout: float = 0.25, in_features: int = 2, dense: bool = False,
                     trust_pickle: bool = False) -> tuple[TemporalModel, dict[str, Any]]:
  """The dilated pose model and its `{'params', 'batch_stats'}` from a VideoPose3D checkpoint."""
  imported = load_videopose3d(path, filter_widths=filter_widths, causal=causal, dropout=dropout,
                              in_features=in_features, dense=dense, trust_pickle=trust_pickle)
  return imported.model_pos, imported.variables_pos


def import_reference(path: str, **options: Any) -> tuple[dict[str, Any], dict[str, Any]]:
  """(`{'params', 'batch_stats'}`, hparams) of the pose model of a VideoPose3D `.bin`;
  `options`: those of `load_videopose3d` (filter_widths, causal, dropout, in_features, dense,
  trust_pickle)."""
  imported = load_videopose3d(path, **options)
  return imported.variables_pos, hparams_of(imported.model_pos)
