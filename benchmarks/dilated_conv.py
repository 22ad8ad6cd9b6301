"""Training speed of the dilated model per convolution implementation (`model.DILATED_CONV`).

The dilated form of `TemporalModel` trains when `train.stride > 1` (chunks of that many output
frames) or `train.dense_training` (one output frame from an RF-frame window, chunk=1), and
evaluates every run. Its convolutions are XLA's dilated convolution ('xla'), one matmul on the
W shifted time slices side by side ('im2col'), or XLA's forward with the im2col form wherever
the model is differentiated ('im2col_train': training runs 'im2col', evaluation 'xla');
`model.dilated_conv_impl` picks one per backend. Parts, for each receptive field and chunk length:

* layer: one dilated layer's convolution, forward and both gradients, at each layer's shapes;
* model: forward and backward of the dilated model (train=True, dropout, BatchNorm statistics);
* step: the engine's compiled one-step function on a resident batch (as the host input path
  runs it: no loop), built as benchmarks/accelerator.py builds it, with the dilated model and
  chunk-length examples;
* train: the trainer's device loop (`engine.compile_device`, `engine.run_segment_device`: a
  `fori_loop` over schedule rows, windows gathered on the device), the same build;
* eval: evaluation's vmapped forward of the stacked models (`device_eval.PoseForward`).

Each implementation is compiled first; the timed rounds then alternate between them (A, B, A,
B, ...) so that all see the same load on a shared machine. One line per case and
implementation, every round's time and the median, and the speed-up over 'xla':

  python benchmarks/dilated_conv.py --impls=xla,im2col,im2col_train
  part=train receptive_field=27 chunk=8 ... impl=im2col_train ms_median=... ms_rounds=...,... speedup_vs_xla=...
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import accelerator  # noqa: E402  (benchmarks/accelerator.py: the engine's build and the synthetic dataset)
from posejax.evaluation import resident as device_eval
from posejax.models import tcn as model_lib  # noqa: E402
from posejax.models.tcn import TemporalModel, dilations, receptive_field  # noqa: E402
from posejax.pose import losses
from posejax.pose.skeleton import LAYOUTS  # noqa: E402
from posejax.training import engine

WIDTHS = accelerator.WIDTHS


@contextlib.contextmanager
def conv_impl(name: str):
  """Traces the model with the `DILATED_CONV[name]` implementation on every backend."""
  saved = model_lib.dilated_conv_impl
  model_lib.dilated_conv_impl = lambda backend: name
  jax.clear_caches()  # no trace of the other implementation is reused
  try:
    yield
  finally:
    model_lib.dilated_conv_impl = saved


def alternate(fns: dict[str, Callable[[], None]], rounds: int) -> dict[str, list[float]]:
  """Milliseconds of each fn per round, the fns called in turn within each round (after one warm-up)."""
  for fn in fns.values():
    fn()
  times = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      start = time.perf_counter()
      fn()
      times[name].append(1e3 * (time.perf_counter() - start))
  return times


def report(prefix: str, times: dict[str, list[float]], per_call: int = 1) -> None:
  """One line per implementation: median and rounds (ms per call / per_call), speed-up over 'xla'."""
  medians = {name: statistics.median(t) / per_call for name, t in times.items()}
  for name, t in times.items():
    line = (f"{prefix} impl={name} ms_median={medians[name]:.1f} "
            f"ms_rounds={','.join(f'{v / per_call:.1f}' for v in t)}")
    if "xla" in medians and name != "xla":
      line += f" speedup_vs_xla={medians['xla'] / medians[name]:.2f}"
    print(line, flush=True)


def layer_fns(impls, widths, chunk: int, batch: int, channels: int, dtype: str) -> list[tuple[str, dict]]:
  """(prefix, {impl: fn}) per dilated layer: its conv's forward and gradients in x and the kernel."""
  rng = np.random.default_rng(0)
  frames = chunk + receptive_field(widths) - 1 - (widths[0] - 1)  # after the expand conv
  out = []
  for w, d in zip(widths[1:], dilations(widths)[1:]):
    x = jnp.asarray(rng.normal(size=(batch, frames, channels)), dtype)
    kernel = jnp.asarray(rng.normal(size=(w, channels, channels)) / np.sqrt(w * channels), dtype)
    fns = {}
    for name in impls:
      conv = model_lib.DILATED_CONV[name]
      grad = jax.jit(jax.grad(lambda x, k, conv=conv: jnp.sum(jnp.square(conv(x, k, d).astype(jnp.float32))),
                              argnums=(0, 1)))
      compiled = grad.lower(x, kernel).compile()
      fns[name] = lambda compiled=compiled, x=x, kernel=kernel: jax.block_until_ready(compiled(x, kernel))
    out.append((f"part=layer receptive_field={receptive_field(widths)} chunk={chunk} batch={batch} "
                f"channels={channels} dtype={dtype} width={w} dilation={d} frames_in={frames}", fns))
    frames -= (w - 1) * d
  return out


def model_fns(impls, widths, chunk: int, batch: int, channels: int, dtype: str) -> dict:
  """{impl: fn} of the dilated model's loss and gradients (train=True) on `batch` chunks."""
  rf = receptive_field(widths)
  net = TemporalModel(num_joints_in=17, num_joints_out=17, filter_widths=widths, channels=channels, dtype=dtype)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(batch, chunk + rf - 1, 17, 2)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(batch, chunk, 17, 3)), jnp.float32)
  variables = jax.jit(lambda: net.init(jax.random.key(0), x[:1], train=False))()

  def loss(params, batch_stats, key):
    pred, updates = net.apply({"params": params, "batch_stats": batch_stats}, x, train=True,
                              rngs={"dropout": key}, mutable=["batch_stats"])
    return losses.mpjpe(pred, y), updates

  fns = {}
  for name in impls:
    with conv_impl(name):
      step = jax.jit(jax.value_and_grad(loss, has_aux=True))
      compiled = step.lower(variables["params"], variables["batch_stats"], jax.random.key(1)).compile()
    fns[name] = lambda compiled=compiled: jax.block_until_ready(
        compiled(variables["params"], variables["batch_stats"], jax.random.key(1)))
  return fns


def eval_fns(impls, widths, chunk: int, batch: int, models: int, channels: int, dtype: str) -> dict:
  """{impl: fn} of evaluation's vmapped forward (`device_eval.PoseForward`, flip augmentation) of
  `models` stacked dilated models on `batch` windows of `chunk` output frames each."""
  rf = receptive_field(widths)
  net = TemporalModel(num_joints_in=17, num_joints_out=17, filter_widths=widths, channels=channels, dtype=dtype)
  layout = LAYOUTS["h36m"]
  forward = device_eval.PoseForward(net, True, (layout.left, layout.right, layout.left, layout.right))
  x = jnp.asarray(np.random.default_rng(0).normal(size=(models, batch, chunk + rf - 1, 17, 2)), jnp.float32)
  one = jax.jit(lambda: net.init(jax.random.key(0), x[0, :1], train=False))()
  variables = jax.tree.map(lambda v: jnp.broadcast_to(v, (models,) + v.shape), one)
  fns = {}
  for name in impls:
    with conv_impl(name):
      compiled = jax.jit(forward).lower(variables, x).compile()
    fns[name] = lambda compiled=compiled: jax.block_until_ready(compiled(variables, x))
  return fns


def train_fns(impls, case: accelerator.Case, chunk: int, dataset, steps_per_call: int) -> tuple[dict, int]:
  """({impl: fn running one compiled call of `steps_per_call` global steps}, slots) on the device path."""
  fns, slots = {}, 0
  for name in impls:
    with conv_impl(name):
      eng, table, state, acc, rows, _ = accelerator.build(case, dataset, steps_per_call, dilated=True, chunk=chunk)
      rng = jax.jit(lambda: jax.random.key(0), out_shardings=eng.layout.replicated)()
      tables = engine.put_tables(table, eng.layout)
      compiled = eng.compile_device(state, acc, tables, rng)
    rows = np.concatenate([rows] * (-(-steps_per_call // len(rows))))[:steps_per_call]
    carry = {"state": state, "acc": acc}  # donated each call: the latest outputs feed the next

    def go(eng=eng, compiled=compiled, carry=carry, tables=tables, rows=rows, rng=rng):
      carry["state"], carry["acc"], _ = engine.run_segment_device(eng, compiled, carry["state"], carry["acc"],
                                                                  tables, rows, 0, rng)
      jax.block_until_ready(carry["acc"])

    fns[name], slots = go, eng.slots.slots
  return fns, slots


def step_fns(impls, case: accelerator.Case, chunk: int, dataset) -> tuple[dict, int]:
  """({impl: fn running the compiled one-step function once on a resident batch}, slots)."""
  fns, slots = {}, 0
  for name in impls:
    with conv_impl(name):
      eng, table, state, acc, rows, _ = accelerator.build(case, dataset, 1, dilated=True, chunk=chunk)
      rng = jax.jit(lambda: jax.random.key(0), out_shardings=eng.layout.replicated)()
      _, one_step, batch = accelerator.step_flops(eng, table, state, acc, rng)
    carry = {"state": state, "acc": acc}

    def go(one_step=one_step, carry=carry, batch=batch, row=rows[0], rng=rng):
      carry["state"], carry["acc"] = one_step(carry["state"], carry["acc"], batch, row, np.int32(0), rng)
      jax.block_until_ready(carry["acc"])

    fns[name], slots = go, eng.slots.slots
  return fns, slots


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--impls", default="xla,im2col_train", help=f"of {','.join(model_lib.DILATED_CONV)}")
  parser.add_argument("--parts", default="layer,model,step,train,eval")
  parser.add_argument("--rfs", default="27,243")
  parser.add_argument("--chunks", default="8,1", help="output frames per example (train.stride; 1: dense_training)")
  parser.add_argument("--batch", type=int, default=256, help="output frames per model and step (train.batch_size)")
  parser.add_argument("--channels", type=int, default=256)
  parser.add_argument("--dtype", default="float32")
  parser.add_argument("--mode", default="action_based", choices=("common", "action_based"))
  parser.add_argument("--steps_per_call", type=int, default=4)
  parser.add_argument("--rounds", type=int, default=4)
  parser.add_argument("--eval_chunk", type=int, default=512, help="output frames per evaluation window")
  parser.add_argument("--eval_windows", type=int, default=2, help="evaluation windows per model and call")
  parser.add_argument("--data_scale", type=float, default=0.02, help="share of Human3.6M's frames to synthesise")
  args = parser.parse_args()
  impls = tuple(args.impls.split(","))
  parts = set(args.parts.split(","))
  device = jax.devices()[0]
  print(f"device={device.device_kind.replace(' ', '_')} platform={device.platform} jax={jax.__version__} "
        f"default_impl={model_lib.dilated_conv_impl(jax.default_backend())}", flush=True)
  dataset = accelerator.synthetic_dataset(args.data_scale) if parts & {"step", "train"} else None
  for rf in (int(r) for r in args.rfs.split(",")):
    widths = WIDTHS[rf]
    chunks = tuple(int(c) for c in args.chunks.split(","))
    for chunk in chunks:
      examples = args.batch // chunk
      common = f"receptive_field={rf} chunk={chunk} examples={examples} channels={args.channels} dtype={args.dtype}"
      if "eval" in parts and chunk == chunks[0]:  # evaluation's chunks do not depend on train.stride
        models = 15 if args.mode == "action_based" else 1
        report(f"part=eval receptive_field={rf} chunk={args.eval_chunk} windows={args.eval_windows} models={models} "
               f"channels={args.channels} dtype={args.dtype} tta=1",
               alternate(eval_fns(impls, widths, args.eval_chunk, args.eval_windows, models, args.channels,
                                  args.dtype), args.rounds))
      if "layer" in parts:
        for prefix, fns in layer_fns(impls, widths, chunk, examples, args.channels, args.dtype):
          report(prefix, alternate(fns, args.rounds))
      if "model" in parts:
        report(f"part=model {common}", alternate(model_fns(impls, widths, chunk, examples, args.channels,
                                                           args.dtype), args.rounds))
      if "step" in parts:
        case = accelerator.Case(rf, args.batch, args.mode, args.dtype, args.channels)
        fns, slots = step_fns(impls, case, chunk, dataset)
        report(f"part=step {common} mode={args.mode} slots={slots} per=global_step", alternate(fns, args.rounds))
      if "train" in parts:
        case = accelerator.Case(rf, args.batch, args.mode, args.dtype, args.channels)
        fns, slots = train_fns(impls, case, chunk, dataset, args.steps_per_call)
        report(f"part=train {common} mode={args.mode} slots={slots} per=global_step",
               alternate(fns, args.rounds), per_call=args.steps_per_call)


if __name__ == "__main__":
  main()
