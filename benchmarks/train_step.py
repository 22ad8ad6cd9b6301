"""Samples per second of the jitted training step (the trainer's own sharded, donated step).

Cases (1024 channels, 17 keypoints, strided training model, random data):

* common mode, receptive field 27, batch 256; and receptive field 243, batch 64;
* action-based mode: ONE vmapped step of 15 models versus 15 one-model steps run one after
  another (receptive field 27, batch per model `--ab_batch`, 256 by default).

Each case is compiled and warmed up, then `--repeats` steps are timed one by one and the
median reported (compilation excluded). `--torch_reference` also times the reference PyTorch
training step (TemporalModelOptimized1f + Adam/AMSGrad, videopose3d.md 8.5, 10.2) on the same
machine when torch is installed:

  python benchmarks/train_step.py
  receptive_field=27 batch=256 channels=1024 mode=common: 612 samples/s
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from posejax import optim, schedules, sharding, train_step  # noqa: E402
from posejax.model import TemporalModel, receptive_field  # noqa: E402

WIDTHS = {27: (3, 3, 3), 81: (3, 3, 3, 3), 243: (3, 3, 3, 3, 3)}
KEYPOINTS = 17


def make_step(widths, channels: int, batch: int, models: int):
  """(jitted step, state, accumulator, device batch, rng) as the trainer builds them."""
  model = TemporalModel(num_joints_in=KEYPOINTS, num_joints_out=17, filter_widths=widths,
                        channels=channels, strided=True)
  rf = receptive_field(widths)
  mode = "common" if models == 1 else "action_based"
  budget = schedules.make_budget("fixed", mode, 1, 15, [100_000] * models, batch)
  layout = sharding.make_layout(models, batch)
  hp_fn = schedules.hyperparams_fn(budget, 1e-3, 0.95, 0.1, 0.001, num_models=layout.padded_models)
  tx = optim.adam_amsgrad()
  ids = jnp.arange(layout.padded_models)

  def step_fn(state, acc, batch_, rng):
    state, metrics = train_step.multi_train_step(state, batch_, rng, model=model, optimizer=tx,
                                                 hyperparams_fn=hp_fn, model_ids=ids)
    return state, train_step.accumulate(acc, metrics), metrics

  state = jax.jit(lambda: train_step.init_stacked_state(model, tx, 0, ids, (1, rf, KEYPOINTS, 2)),
                  out_shardings=layout.model_sharding)()
  acc = jax.device_put(train_step.init_accumulator(layout.padded_models), layout.model_sharding)
  data = np.random.default_rng(0)
  host = sharding.pad_batch({
      "poses_2d": data.normal(scale=0.3, size=(models, batch, rf, KEYPOINTS, 2)).astype(np.float32),
      "poses_3d": data.normal(scale=0.3, size=(models, batch, 1, 17, 3)).astype(np.float32),
      "active": np.ones(models, bool), "epoch": np.zeros(models, np.int32)}, layout.padded_models)
  device_batch = sharding.put_batch(host, layout)
  rng = jax.device_put(jax.random.key(0), layout.replicated)
  compiled = sharding.jit_step(step_fn, layout, host).lower(state, acc, device_batch, rng).compile()
  return compiled, state, acc, device_batch, rng


def median_seconds(fn, repeats: int, warmup: int) -> float:
  """Median wall seconds of `fn()` over `repeats` calls after `warmup` untimed calls."""
  for _ in range(warmup):
    fn()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def time_steps(cases, repeats: int, warmup: int) -> float:
  """Median seconds of one round (one step of every case, one after another)."""
  states = [list(c[1:3]) for c in cases]

  def round_():
    for (compiled, _, _, batch, rng), s in zip(cases, states):
      s[0], s[1], metrics = compiled(s[0], s[1], batch, rng)
    jax.block_until_ready([s[1] for s in states])

  return median_seconds(round_, repeats, warmup)


def torch_reference(widths, channels: int, batch: int, repeats: int, warmup: int) -> float:
  """Samples/s of the reference PyTorch strided model's training step (CPU threads as set)."""
  import torch
  from torch import nn

  class Optimized1f(nn.Module):
    def __init__(self):
      super().__init__()
      self.expand = nn.Conv1d(KEYPOINTS * 2, channels, widths[0], stride=widths[0], bias=False)
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
  x = torch.randn(batch, receptive_field(widths), KEYPOINTS, 2)
  y = torch.randn(batch, 1, 17, 3)

  def step():
    opt.zero_grad()
    torch.mean(torch.norm(model(x) - y, dim=-1)).backward()
    opt.step()

  return batch / median_seconds(step, repeats, warmup)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--channels", type=int, default=1024)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--ab_batch", type=int, default=256, help="batch per model in the 15-action comparison")
  parser.add_argument("--ab_rf", type=int, default=27, choices=sorted(WIDTHS))
  parser.add_argument("--skip_ab", action="store_true")
  parser.add_argument("--torch_reference", action="store_true",
                      help="also time the reference PyTorch step (needs torch)")
  args = parser.parse_args()
  device = jax.devices()[0]
  print(f"device: {len(jax.devices())} x {device.device_kind} ({device.platform}), jax {jax.__version__}", flush=True)

  for rf, batch in ((27, 256), (243, 64)):
    seconds = time_steps([make_step(WIDTHS[rf], args.channels, batch, 1)], args.repeats, args.warmup)
    print(f"receptive_field={rf} batch={batch} channels={args.channels} mode=common: "
          f"{batch / seconds:.0f} samples/s ({1000 * seconds:.1f} ms/step)", flush=True)
    if args.torch_reference:
      import torch
      rate = torch_reference(WIDTHS[rf], args.channels, batch, args.repeats, args.warmup)
      print(f"receptive_field={rf} batch={batch} channels={args.channels} mode=common "
            f"(reference PyTorch {torch.__version__}, {torch.get_num_threads()} threads): {rate:.0f} samples/s",
            flush=True)

  if args.skip_ab:
    return
  rf, batch = args.ab_rf, args.ab_batch
  seconds = time_steps([make_step(WIDTHS[rf], args.channels, batch, 15)], args.repeats, args.warmup)
  print(f"receptive_field={rf} batch={batch}x15 channels={args.channels} mode=action_based "
        f"(one vmapped step of 15 models): {15 * batch / seconds:.0f} samples/s "
        f"({1000 * seconds:.1f} ms/step)", flush=True)
  # 15 independent one-model runs interleaved step by step (the seed's 15 processes, serialised).
  single = make_step(WIDTHS[rf], args.channels, batch, 1)
  cases = [single] + [(single[0],) + tuple(jax.tree.map(jnp.copy, single[1:3])) + single[3:]
                      for _ in range(14)]
  seconds = time_steps(cases, args.repeats, args.warmup)
  print(f"receptive_field={rf} batch={batch}x15 channels={args.channels} mode=15 single-action steps "
        f"one after another: {15 * batch / seconds:.0f} samples/s ({1000 * seconds:.1f} ms per 15 steps)",
        flush=True)


if __name__ == "__main__":
  main()
