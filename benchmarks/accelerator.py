"""Training throughput of the library's own compiled step and loop, with FLOPs and MFU.

Each case builds a run the way the trainer does (frame tables, budget, compacted schedule,
`engine.Engine`) on a Human3.6M-shaped synthetic dataset made in memory (per-action frame
counts in Human3.6M's proportions), compiles the step, warms up, and times global steps:

* input=none: the compiled one-step function on one resident batch (the step alone);
* input=device: the trainer's device loop (`engine.run_segment_device`): schedule rows in,
  windows gathered on the device inside the step;
* input=host: the trainer's host loop (`engine.run_segment_host`) fed by tf.data
  (needs TensorFlow; skipped without it).

Modes: common at batch B and at 15 x B (the samples of one AB global step), and action_based
with 15 models at batch B each on the compacted schedule (`slots` models per global step).
FLOPs come from XLA's cost analysis of the compiled one-step function; the peak is
`--peak_tflops` or measured here with a large matmul of the case's dtype. One line per case:

  python benchmarks/accelerator.py                     # the preset of the platform (cpu / gpu)
  receptive_field=243 batch=1024 models=15 mode=action_based dtype=bfloat16 input=device
    samples_per_s=... us_per_sample=... tflops=... mfu=... h2d_bytes_per_step=... useful_fraction=...

Needs only jax, flax, optax and numpy for the none/device cases (no TensorFlow, no
ml_collections). `--torch_reference` also times the reference PyTorch training step.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from posejax.common import sharding  # noqa: E402
from posejax.data.dataset import PoseDataset, SequenceRecord  # noqa: E402
from posejax.data.h36m_frames import frames_array  # noqa: E402
from posejax.models.family import Window  # noqa: E402
from posejax.models.tcn import TemporalModel, receptive_field  # noqa: E402
from posejax.pose.actions import ACTIONS  # noqa: E402
from posejax.pose.skeleton import H36M_SKELETON, LAYOUTS  # noqa: E402
from posejax.training import engine, optim, sampling, schedules, slices, step as train_step

WIDTHS = {27: (3, 3, 3), 81: (3, 3, 3, 3), 243: (3, 3, 3, 3, 3)}
H36M_FRAMES = frames_array("train")  # Human3.6M training frames per action, canonical order
SEED_CONFIGS = ("ab243", "ab27", "ab1")
PRESETS = {  # batch per model by receptive field; timed calls of steps_per_call steps
    "gpu": dict(rfs=(27, 243), batch={27: 1024, 243: 1024}, dtypes=("float32", "bfloat16"), data_scale=1.0,
                calls=4, steps_per_call=8, inputs=("none", "device", "host"),
                modes=("common", "common15", "action_based")),
    # The CPU cases compared with the reference PyTorch step on the same machine; bf16 (emulated
    # on CPUs), the host input and 15 x B are flags away.
    "cpu": dict(rfs=(27, 243), batch={27: 256, 243: 64}, dtypes=("float32",), data_scale=0.05, calls=2,
                steps_per_call=2, inputs=("none", "device"), modes=("common", "action_based")),
}


def synthetic_dataset(scale: float, seed: int = 0, sequence_frames: int = 1000) -> PoseDataset:
  """Random-walk poses with Human3.6M's shapes and per-action frame counts (times `scale`)."""
  rng = np.random.default_rng(seed)
  records = []
  for action, total in zip(ACTIONS, H36M_FRAMES):
    remaining, index = max(int(total * scale), 300), 0
    while remaining > 0:
      frames = min(sequence_frames, remaining)
      walk = np.cumsum(rng.normal(scale=0.01, size=(frames, 17, 5)), axis=0).astype(np.float32)
      records.append(SequenceRecord(subject="S1", name=f"{action} {index}", action=action, camera=index % 4,
                                    poses_2d=walk[..., :2].copy(), poses_3d=walk[..., 2:].copy(),
                                    intrinsic=np.zeros(9, np.float32), res_w=1000, res_h=1000))
      remaining -= frames
      index += 1
  layout = LAYOUTS["h36m"]
  return PoseDataset(sequences=tuple(records), keypoints_left=layout.left, keypoints_right=layout.right,
                     skeleton=H36M_SKELETON, num_keypoints=17, fps=50.0, layout_name="h36m", source="synthetic")


@dataclasses.dataclass
class Case:
  rf: int
  batch: int
  mode: str  # common, common15, action_based
  dtype: str
  channels: int

  @property
  def per_model_batch(self) -> int:
    return self.batch * 15 if self.mode == "common15" else self.batch


def build(case: Case, dataset: PoseDataset, steps_per_call: int, *, dilated: bool = False, chunk: int = 1):
  """(engine, table, state, accumulator, schedule inputs, useful fraction) as the trainer builds them.

  dilated: train the dilated model (the trainer's train.stride > 1 or train.dense_training) on
  examples of `chunk` output frames, case.per_model_batch // chunk of them per batch.
  """
  mode = "common" if case.mode.startswith("common") else "action_based"
  table = sampling.make_window_table(dataset, ACTIONS, mode, True, chunk)
  names = slices.slice_names(mode, ACTIONS)
  batch = case.per_model_batch // chunk
  layout = sharding.make_layout(len(names), batch)
  ids = slices.model_ids(names, layout.padded_models)
  spec = sampling.window_spec(table, batch_size=batch, window=Window(case.rf, 0), seed=0,
                              stream_ids=ids[:len(names)])
  budget = schedules.make_budget("fixed", mode, 1, 15, table.examples, batch)
  targets = slices.log_targets(budget.steps, [s for _, s in schedules.log_steps(budget.total_steps, 1, 1)])
  slot_layout, useful = slices.choose_slots(targets, layout.action_size, layout.padded_models)
  model = TemporalModel(num_joints_in=17, num_joints_out=17, filter_widths=WIDTHS[case.rf], channels=case.channels,
                        strided=not dilated, dtype=case.dtype)
  tx = optim.adam_amsgrad()
  hp = schedules.hyperparams_fn(budget, 1e-3, 0.95, 0.1, 0.001, num_models=layout.padded_models)
  eng = engine.Engine(model, tx, hp, ids, layout, slot_layout, spec, table.examples, steps_per_call=steps_per_call)
  shape = (1, spec.window_frames, 17, 2)
  state = jax.jit(lambda: train_step.init_stacked_state(model, tx, 0, jnp.asarray(ids), shape),
                  out_shardings=layout.model_sharding)()
  acc = engine.fresh_accumulator(layout)
  padded = np.zeros(layout.padded_models, np.int64)
  target = padded.copy()
  target[:len(budget.steps)] = budget.steps
  rows = slices.segment_rows(padded, target, slot_layout)
  return eng, table, state, acc, eng.schedule_inputs(rows, padded), useful


def step_flops(eng: engine.Engine, table, state, acc, rng) -> tuple[float, object, dict]:
  """(FLOPs of one global step from XLA's cost analysis, compiled one-step fn, a resident batch)."""
  compiled = eng.compile_host(state, acc, engine.host_batch_example(eng, table), rng)
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  tables = engine.put_tables(table, eng.layout)
  row = np.zeros((eng.slots.slots, 3), np.int32)
  row[:, 0] = np.arange(eng.slots.slots) % eng.num_models
  batch = jax.jit(eng.device_batch)(tables, row)
  return float(cost.get("flops", 0.0)), compiled, batch


def measure_peak(dtype: str, size: int) -> float:
  """TFLOP/s of a large matmul in `dtype` (median of 5 after warm-up)."""
  a = jnp.asarray(np.random.default_rng(0).normal(size=(size, size)), dtype)
  f = jax.jit(lambda x: x @ x)
  f(a).block_until_ready()
  times = []
  for _ in range(5):
    start = time.perf_counter()
    f(a).block_until_ready()
    times.append(time.perf_counter() - start)
  return 2 * size**3 / statistics.median(times) / 1e12


def run_cases(case: Case, inputs: tuple[str, ...], dataset: PoseDataset, calls: int, steps_per_call: int,
              peak: float) -> list[str]:
  """One line per input path of `case` (one build and one step compilation shared by all)."""
  eng, table, state, acc, rows, useful = build(case, dataset, steps_per_call)
  rng = jax.jit(lambda: jax.random.key(0), out_shardings=eng.layout.replicated)()
  flops, one_step, batch = step_flops(eng, table, state, acc, rng)
  steps = calls * steps_per_call
  rows = np.concatenate([rows] * (-(-2 * steps // len(rows))))[:2 * steps]  # warm-up + timed
  warm, timed = rows[:steps], rows[steps:]
  lines = []
  for input_mode in inputs:
    if input_mode == "none":
      def go(rows, state, acc):
        for i, row in enumerate(rows):
          state, acc = one_step(state, acc, batch, row, np.int32(i), rng)
        return state, acc
      h2d = 0
    elif input_mode == "device":
      tables = engine.put_tables(table, eng.layout)
      compiled = eng.compile_device(state, acc, tables, rng)
      def go(rows, state, acc):
        return engine.run_segment_device(eng, compiled, state, acc, tables, rows, 0, rng)[:2]
      h2d = eng.slots.slots * 3 * 4 + 8 // steps_per_call  # schedule rows, plus two scalars per call
    else:
      try:
        from posejax.training import input_pipeline  # TensorFlow
      except ImportError as e:
        lines.append(f"receptive_field={case.rf} mode={case.mode} dtype={case.dtype} input=host skipped ({e})")
        continue
      def go(rows, state, acc):
        batches = input_pipeline.host_batches(table, eng.spec, np.minimum(rows[..., 0], eng.num_models - 1),
                                              rows[..., 1])
        return engine.run_segment_host(eng, one_step, state, acc, batches, rows, 0, rng)[:2]
      h2d = int(sum(np.prod(s.shape) * 4 for s in engine.host_batch_example(eng, table).values()))
      h2d += eng.slots.slots * 12
    state, acc = go(warm, state, acc)
    jax.block_until_ready(acc)
    start = time.perf_counter()
    state, acc = go(timed, state, acc)
    jax.block_until_ready(acc)
    seconds = time.perf_counter() - start
    rate = int(np.sum(timed[..., 0] < eng.layout.padded_models)) * case.per_model_batch / seconds
    tflops = flops * len(timed) / seconds / 1e12
    lines.append(
        f"receptive_field={case.rf} batch={case.per_model_batch} models={15 if case.mode == 'action_based' else 1} "
        f"mode={case.mode} dtype={case.dtype} input={input_mode} channels={case.channels} slots={eng.slots.slots} "
        f"samples_per_s={rate:.0f} us_per_sample={1e6 / rate:.2f} "
        f"gflop_per_sample={flops / (eng.slots.slots * case.per_model_batch) / 1e9:.3f} tflops={tflops:.2f} "
        f"mfu={tflops / peak:.3f} h2d_bytes_per_step={h2d} useful_fraction={useful:.4f}")
  return lines


def schedule_lines(frames: np.ndarray = H36M_FRAMES) -> list[str]:
  """Useful fraction of the seed configs' schedules on training frames per action (default
  Human3.6M's; flip augmentation doubles the examples)."""
  try:
    import importlib
    out = []
    for name in SEED_CONFIGS:
      config = importlib.import_module(f"configs.{name}").get_config()
      b = int(config.train.batch_size)
      budget = schedules.make_budget(str(config.train.budget), str(config.mode), int(config.train.epochs),
                                     int(config.train.unit_epochs), 2 * np.asarray(frames), b)
      points = schedules.log_steps(budget.total_steps, budget.common_epochs, int(config.train.logs_per_epoch))
      targets = slices.log_targets(budget.steps, [s for _, s in points])
      layout, useful = slices.choose_slots(targets, 1, 15)
      lengths, _ = slices.run_length(targets, layout, 15)
      _, lockstep = slices.run_length(targets, slices.SlotLayout(1, 15, 15), 15)
      out.append(f"schedule config={name} useful_fraction={useful:.4f} slots={layout.slots} "
                 f"global_steps={int(lengths.sum())} lockstep_useful_fraction={lockstep:.4f}")
    return out
  except ImportError as e:  # ml_collections absent (e.g. a bare accelerator image)
    return [f"schedule skipped ({e})"]


def torch_reference(widths, channels: int, batch: int, repeats: int) -> float:
  """Samples/s of the reference PyTorch strided model's training step (CPU threads as set)."""
  import torch
  from torch import nn

  class Optimized1f(nn.Module):
    def __init__(self):
      super().__init__()
      self.expand = nn.Conv1d(17 * 2, channels, widths[0], stride=widths[0], bias=False)
      self.convs = nn.ModuleList()
      for w in widths[1:]:
        self.convs.extend([nn.Conv1d(channels, channels, w, stride=w, bias=False),
                           nn.Conv1d(channels, channels, 1, bias=False)])
      self.bns = nn.ModuleList(nn.BatchNorm1d(channels) for _ in range(len(self.convs) + 1))
      self.shrink, self.drop = nn.Conv1d(channels, 17 * 3, 1), nn.Dropout(0.25)

    def forward(self, x):
      x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
      x = self.drop(torch.relu(self.bns[0](self.expand(x))))
      for i, w in enumerate(widths[1:]):
        res = x[:, :, w // 2::w]
        x = self.drop(torch.relu(self.bns[2 * i + 1](self.convs[2 * i](x))))
        x = res + self.drop(torch.relu(self.bns[2 * i + 2](self.convs[2 * i + 1](x))))
      return self.shrink(x).permute(0, 2, 1).reshape(x.shape[0], -1, 17, 3)

  model = Optimized1f()
  opt = torch.optim.Adam(model.parameters(), lr=1e-3, amsgrad=True)
  x, y = torch.randn(batch, receptive_field(widths), 17, 2), torch.randn(batch, 1, 17, 3)

  def step():
    opt.zero_grad()
    torch.mean(torch.norm(model(x) - y, dim=-1)).backward()
    opt.step()

  for _ in range(2):
    step()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    step()
    times.append(time.perf_counter() - start)
  return batch / statistics.median(times)


def main() -> None:
  platform = jax.devices()[0].platform
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", default="gpu" if platform in ("gpu", "cuda", "tpu") else "cpu", choices=PRESETS)
  parser.add_argument("--rfs", default=None, help="receptive fields, e.g. 27,243")
  parser.add_argument("--batch", type=int, default=None, help="windows per model and step")
  parser.add_argument("--channels", type=int, default=1024)
  parser.add_argument("--dtypes", default=None)
  parser.add_argument("--inputs", default=None, help="none,device,host")
  parser.add_argument("--modes", default=None, help="common,common15,action_based")
  parser.add_argument("--calls", type=int, default=None, help="timed calls of --steps_per_call steps")
  parser.add_argument("--steps_per_call", type=int, default=None)
  parser.add_argument("--data_scale", type=float, default=None, help="share of Human3.6M's frames to synthesise")
  parser.add_argument("--peak_tflops", type=float, default=0.0, help="peak of the dtype (0: measure)")
  parser.add_argument("--cases", default=None, help="only cases RF:MODE:DTYPE:INPUT, comma separated")
  parser.add_argument("--torch_reference", action="store_true", help="also time the reference PyTorch step")
  parser.add_argument("--no_schedule", action="store_true")
  args = parser.parse_args()
  p = PRESETS[args.preset]
  split = lambda value, default, cast=str: tuple(cast(v) for v in value.split(",")) if value else default
  rfs, dtypes = split(args.rfs, p["rfs"], int), split(args.dtypes, p["dtypes"])
  inputs, modes = split(args.inputs, p["inputs"]), split(args.modes, p["modes"])
  calls, steps_per_call = args.calls or p["calls"], args.steps_per_call or p["steps_per_call"]
  device = jax.devices()[0]
  print(f"device={device.device_kind.replace(' ', '_')} platform={platform} devices={len(jax.devices())} "
        f"jax={jax.__version__} preset={args.preset}", flush=True)
  if not args.no_schedule:
    for line in schedule_lines():
      print(line, flush=True)
  dataset = synthetic_dataset(args.data_scale or p["data_scale"])
  print(f"dataset frames={dataset.frames()} sequences={len(dataset.sequences)}", flush=True)
  peaks = {}
  for dtype in dtypes:
    peaks[dtype] = args.peak_tflops or measure_peak(dtype, 8192 if platform != "cpu" else 2048)
    print(f"peak dtype={dtype} tflops={peaks[dtype]:.2f} ({'given' if args.peak_tflops else 'measured matmul'})",
          flush=True)
  wanted = set(args.cases.split(",")) if args.cases else None
  for rf in rfs:
    for mode in modes:
      for dtype in dtypes:
        chosen = tuple(i for i in inputs if wanted is None or f"{rf}:{mode}:{dtype}:{i}" in wanted)
        if chosen:
          case = Case(rf, args.batch or p["batch"][rf], mode, dtype, args.channels)
          for line in run_cases(case, chosen, dataset, calls, steps_per_call, peaks[dtype]):
            print(line, flush=True)
      if args.torch_reference and mode == "common":
        import torch
        batch = args.batch or p["batch"][rf]
        rate = torch_reference(WIDTHS[rf], args.channels, batch, 5)
        print(f"receptive_field={rf} batch={batch} models=1 mode=common reference=pytorch-{torch.__version__} "
              f"threads={torch.get_num_threads()} samples_per_s={rate:.0f}", flush=True)


if __name__ == "__main__":
  main()
