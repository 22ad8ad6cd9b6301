"""Export of a workdir's evaluation model to ONNX or a TensorFlow SavedModel.

  python -m posejax.export --workdir RUN --format onnx|tf_saved_model --out PATH \
      [--checkpoint latest|best|STEP] [--slice ACTION] [--frames N] [--overwrite]

The exported graph is the dilated model with the checkpoint's weights baked in:
input `poses_2d` (B, T, K, F) float32 normalized screen coordinates (F = 2, or the features the
model was trained on, e.g. x, y, confidence), output `poses_3d`
(B, T - RF + 1, 17, 3) camera-space root-relative metres. B is dynamic; T is dynamic (any
T >= RF) or fixed with `--frames N`. The graph does no padding and no flip augmentation:
one pose per input frame, as `eval.py` gives, needs `pad + shift` copies of the first frame
before the sequence and `pad - shift` of the last after (pad = (RF - 1) // 2, shift = pad
for causal models, else 0). A shorter input (T < RF) is refused at run time by onnxruntime
and TensorFlow alike. The receptive field, padding, causality, action and checkpoint step
are stored with the model: ONNX `metadata_props` `posejax.*` (JSON values), SavedModel
`assets.extra/posejax.json`.

Converters: `jax2onnx` (ONNX opset 23) traces the model with JAX symbolic dimensions
`B, T` constrained by `T >= RF`; `jax.experimental.jax2tf` serializes it natively (StableHLO
in an XlaCallModule op, for CPU and CUDA) with the same polymorphic shape and constraint,
the weights as the SavedModel's variables, signature `serving_default`.

An action-based workdir holds one model per action: `--slice ACTION` exports one to PATH;
without it PATH is a folder (created, even when it is named `ab.onnx`) holding every action's
model, `PATH/<action>.onnx` or `PATH/<action>/` (a SavedModel each), and one line says so:
`wrote 15 models to ab.onnx/ (one per action: Directions.onnx, ...; pick one with --slice
ACTION)`. Files are written to a temporary name and renamed; an existing path is replaced only
with `--overwrite`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pathlib
import re
import shutil
import sys
import tempfile
from typing import Any, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from posejax.common.errors import PosejaxError
from posejax.common.io_utils import atomic_write_bytes
from posejax.evaluation import runs as eval_lib
from posejax.evaluation.protocols import COMMON_SLICE
from posejax.models.family import PoseModel

FORMATS = ("onnx", "tf_saved_model")
ONNX_OPSET = 23
SAVED_MODEL_PLATFORMS = ("cpu", "cuda")
METADATA_FILE = os.path.join("assets.extra", "posejax.json")  # inside a SavedModel
_ONNX_HINT = "--format onnx requires jax2onnx, onnx and onnxruntime: pip install -e .[export]"


def input_shape(model: PoseModel, frames: int | None) -> tuple[Any, ...]:
  """(B, T, K, F) with symbolic B and, unless `frames` is given, symbolic T >= RF."""
  rf = model.receptive_field
  if frames is None:
    batch, time = jax.export.symbolic_shape("B, T", constraints=(f"T >= {rf}",))
  else:
    (batch,), time = jax.export.symbolic_shape("B"), int(frames)
  return batch, time, model.num_joints_in, model.in_features


def _forward(model: PoseModel):
  """(variables, poses_2d (B, T, K, F)) -> (B, T - RF + 1, J, 3), evaluation mode."""
  dilated = model.dilated()
  return lambda variables, poses_2d: dilated.apply(variables, poses_2d, train=False)


def describe(model: PoseModel, frames: int | None, **extra: Any) -> dict[str, Any]:
  """What a consumer of the exported model needs to know (stored with it)."""
  rf = model.receptive_field
  pad, shift = model.pad, model.causal_shift
  time, out_time = ("T", f"T - {rf - 1}") if frames is None else (str(frames), str(frames - rf + 1))
  return {"producer": "posejax", "receptive_field": rf, **model.architecture(),
          "input": f"poses_2d float32 (B, {time}, {model.num_joints_in}, {model.in_features}) "
                   "normalized screen coordinates" + (f", T >= {rf}" if frames is None else ""),
          "output": f"poses_3d float32 (B, {out_time}, {model.num_joints_out}, 3) "
                    "camera-space root-relative metres",
          "pad_before": pad + shift, "pad_after": pad - shift, **extra}


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
  """Errors only from these loggers meanwhile: jax2onnx warns, with tracebacks, about plugins
  for libraries we do not use and about shape annotations it leaves out."""
  loggers = [logging.getLogger(name) for name in names]
  levels = [lg.level for lg in loggers]
  for lg in loggers:
    lg.setLevel(logging.ERROR)
  try:
    yield
  finally:
    for lg, level in zip(loggers, levels):
      lg.setLevel(level)


@contextlib.contextmanager
def _jax_plugins_only() -> Iterator[None]:
  """Lets jax2onnx load only its plugins for JAX primitives during one conversion.

  On first use jax2onnx imports every plugin, Equinox and Flax NNX examples included, which
  build and compile models at import (10-20 s on 2 cores). This graph holds JAX primitives
  only, so their plugins suffice; discovery is marked undone again afterwards, so a later
  conversion of another kind of model in this process still loads everything. Versions
  without these internals simply do their full discovery.
  """
  try:
    from jax2onnx.plugins import plugin_system
    done, import_tree = plugin_system._already_imported_plugins, plugin_system._import_tree
  except (ImportError, AttributeError):
    done = True
  if done:
    yield
    return
  import_tree(pathlib.Path(plugin_system.__file__).parent / "jax", "jax2onnx.plugins.jax")
  plugin_system._already_imported_plugins = True
  try:
    yield
  finally:
    plugin_system._already_imported_plugins = False


def onnx_bytes(model: PoseModel, variables: Any, frames: int | None = None,
               metadata: dict[str, Any] | None = None) -> bytes:
  """The serialized ONNX model with `variables` as initializers."""
  try:
    from jax2onnx import to_onnx
  except ImportError:
    raise PosejaxError(_ONNX_HINT) from None
  variables = jax.tree_util.tree_map(jnp.asarray, variables)
  forward = _forward(model)
  with _quiet_loggers("jax2onnx", "onnx_ir"), _jax_plugins_only():
    proto = to_onnx(lambda poses_2d: forward(variables, poses_2d),
                    [jax.ShapeDtypeStruct(input_shape(model, frames), jnp.float32)],
                    model_name="posejax_temporal_model", opset=ONNX_OPSET,
                    input_names=["poses_2d"], output_names=["poses_3d"])
  for key, value in (metadata or {}).items():
    entry = proto.metadata_props.add()
    entry.key, entry.value = f"posejax.{key}", json.dumps(value)
  return proto.SerializeToString()


def write_saved_model(model: PoseModel, variables: Any, directory: str, frames: int | None = None,
                      metadata: dict[str, Any] | None = None) -> None:
  """Saves a SavedModel to `directory` (which must not exist): signature `serving_default`,
  `poses_2d` -> {'poses_3d'}, the weights as non-trainable variables."""
  from jax.experimental import jax2tf
  from posejax.common.tf_compat import tf
  rf = model.receptive_field
  k, f = model.num_joints_in, model.in_features
  shape = f"(b, {'t' if frames is None else frames}, {k}, {f})"
  converted = jax2tf.convert(
      _forward(model), polymorphic_shapes=[None, shape],
      polymorphic_constraints=(f"t >= {rf}",) if frames is None else (),
      with_gradient=False, native_serialization_platforms=SAVED_MODEL_PLATFORMS)
  module = tf.Module()
  module.weights = tf.nest.map_structure(lambda x: tf.Variable(np.asarray(x), trainable=False),
                                         jax.tree_util.tree_map(np.asarray, dict(variables)))

  @tf.function(autograph=False, input_signature=[
      tf.TensorSpec([None, frames, k, f], tf.float32, name="poses_2d")])
  def serve(poses_2d):
    return {"poses_3d": converted(module.weights, poses_2d)}

  module.serve = serve
  tf.saved_model.save(module, directory, signatures={"serving_default": serve})
  extra = os.path.join(directory, METADATA_FILE)
  os.makedirs(os.path.dirname(extra), exist_ok=True)
  with open(extra, "w") as out:
    json.dump(metadata or {}, out, indent=2)


def _publish_directory(tmp: str, path: str, overwrite: bool) -> None:
  """Moves the complete `tmp` directory to `path`; an old `path` is removed only afterwards."""
  if not os.path.lexists(path):
    os.rename(tmp, path)
    return
  if not overwrite:
    raise PosejaxError(f"--out {path}: already exists (pass --overwrite to replace it)")
  old = tmp + ".old"
  os.rename(path, old)
  os.rename(tmp, path)
  shutil.rmtree(old)


def export_model(model: PoseModel, variables: Any, fmt: str, path: str, *, frames: int | None = None,
                 metadata: dict[str, Any] | None = None, overwrite: bool = False) -> None:
  """Writes one model (unstacked variables) in format `fmt` to `path`, atomically."""
  check_format(fmt)
  check_target(path, fmt, overwrite)
  rf = model.receptive_field
  if frames is not None and frames < rf:
    raise PosejaxError(f"--frames {frames}: fewer than the receptive field ({rf} frames)")
  metadata = describe(model, frames, **(metadata or {}))
  if fmt == "onnx":
    atomic_write_bytes(path, onnx_bytes(model, variables, frames, metadata))
    return
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(dir=parent, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
  try:
    os.rmdir(tmp)  # tf.saved_model.save creates it
    write_saved_model(model, variables, tmp, frames, metadata)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 -> what a plain mkdir gives
    _publish_directory(tmp, path, overwrite)
  finally:
    if os.path.exists(tmp):
      shutil.rmtree(tmp)


def check_format(fmt: str) -> None:
  if fmt not in FORMATS:
    raise PosejaxError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")


def check_target(path: str, fmt: str, overwrite: bool) -> None:
  """An existing `path` may only be replaced with `overwrite`, and only by the same kind of output."""
  if not os.path.lexists(path):
    return
  if not overwrite:
    raise PosejaxError(f"--out {path}: already exists (pass --overwrite to replace it)")
  if fmt == "onnx" and os.path.isdir(path):
    raise PosejaxError(f"--out {path}: is a directory; not replacing it with an ONNX file")
  if fmt == "tf_saved_model" and not os.path.isfile(os.path.join(path, "saved_model.pb")):
    raise PosejaxError(f"--out {path}: is not a SavedModel; not replacing it")


def choose_slices(actions_of_slices: Sequence[str], slice_name: str | None) -> list[int]:
  """Indices of the models to export: the one that serves `slice_name` (a common model serves
  every action), or every action's model when it is None."""
  slices = list(actions_of_slices)
  if slices == [COMMON_SLICE]:
    return [0]
  if slice_name is None:
    return list(range(len(slices)))
  if slice_name not in slices:
    raise PosejaxError(f"--slice {slice_name!r}: no such model in this workdir "
                       f"(choices: {', '.join(slices)})")
  return [slices.index(slice_name)]


def output_paths(out: str, fmt: str, names: Sequence[str] | None) -> list[str]:
  """`[out]` for one model; else one path per action inside the directory `out`."""
  if names is None:
    return [out]
  if os.path.exists(out) and not os.path.isdir(out):
    raise PosejaxError(f"--out {out}: exists and is not a directory (one file per action goes inside it)")
  suffix = ".onnx" if fmt == "onnx" else ""
  return [os.path.join(out, re.sub(r"[^A-Za-z0-9_.-]", "_", name) + suffix) for name in names]


def export_workdir(workdir: str, fmt: str, out: str, *, which: str | int = "latest",
                   slice_name: str | None = None, frames: int | None = None,
                   overwrite: bool = False) -> list[str]:
  """Exports a workdir's model(s); returns the written paths."""
  check_format(fmt)
  if frames is not None and frames < 1:
    raise PosejaxError(f"--frames {frames}: must be a positive number of frames")
  run = eval_lib.restore_run(workdir, which)
  indices = choose_slices(run.actions_of_slices, slice_name)
  names = [run.actions_of_slices[i] for i in indices]
  single = slice_name is not None or names == [COMMON_SLICE]
  paths = output_paths(out, fmt, None if single else names)
  for path in paths:
    check_target(path, fmt, overwrite)
  model = eval_lib.build_model(run)  # the architecture the checkpoint records
  for index, name, path in zip(indices, names, paths):
    variables = jax.tree_util.tree_map(lambda leaf: leaf[index], run.variables)
    info = {"action": name, "checkpoint_step": run.step,
            "keypoints_2d": run.config.data.keypoints}
    export_model(model, variables, fmt, path, frames=frames, metadata=info, overwrite=overwrite)
  return paths


def written(out: str, paths: Sequence[str]) -> str:
  """The line that reports an export: one model at `out`, or the folder `out` of per-action models."""
  if list(paths) == [out]:
    return f"wrote {out}"
  names = ", ".join(os.path.basename(p) + ("" if p.endswith(".onnx") else "/") for p in paths)
  return (f"wrote {len(paths)} model{'s' if len(paths) > 1 else ''} to {out.rstrip(os.sep)}{os.sep} "
          f"(one per action: {names}; pick one with --slice ACTION)")


def main(argv: Sequence[str] | None = None) -> int:
  """Command-line entry point; a user error prints one line and returns 2."""
  parser = argparse.ArgumentParser(prog="python -m posejax.export", description=__doc__.splitlines()[0])
  parser.add_argument("--workdir", required=True, help="training workdir")
  parser.add_argument("--format", required=True, help="onnx or tf_saved_model")
  parser.add_argument("--out", required=True, help="output file (onnx) or directory (SavedModel); for an "
                      "action-based workdir without --slice, a folder of one model per action "
                      "(OUT/<action>.onnx or OUT/<action>/)")
  parser.add_argument("--checkpoint", default="latest", help="latest (the final model), best (needs a held-out validation split) or a step number")
  parser.add_argument("--slice", default=None, help="action-based workdirs: the action whose model to "
                      "export (default: every action's, one file each); a common model serves every action")
  parser.add_argument("--frames", type=int, default=None,
                      help="fixed input length N (default: any length >= the receptive field)")
  parser.add_argument("--overwrite", action="store_true", help="replace existing output paths")
  args = parser.parse_args(argv)
  try:
    paths = export_workdir(args.workdir, args.format, args.out, which=args.checkpoint,
                           slice_name=args.slice, frames=args.frames, overwrite=args.overwrite)
  except PosejaxError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(written(args.out, paths))
  return 0


if __name__ == "__main__":
  sys.exit(main())
