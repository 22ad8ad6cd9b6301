"""posejax.training.memory_plan: the compiled step's footprint against the device, fewer slots when it
does not fit, and a run that trains the same models with them."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from posejax.common.errors import PosejaxError
from posejax.training import memory_plan


@pytest.fixture(scope="module")
def data_dir(synthetic_h36m_dir):
  return synthetic_h36m_dir  # read only


class FakeCompiled:
  """A compiled call whose memory analysis reports `base + per_slot * k` temporaries."""

  def __init__(self, k: int, base: int, per_slot: int):
    self.k = k
    self.stats = type("Stats", (), dict(argument_size_in_bytes=base, output_size_in_bytes=64, alias_size_in_bytes=64,
                                        temp_size_in_bytes=per_slot * k, generated_code_size_in_bytes=0))()

  def memory_analysis(self):
    return self.stats


def _fake(base=1000, per_slot=300):
  compiled = []

  def compile_at(k):
    compiled.append(k)
    return FakeCompiled(k, base, per_slot)
  return compile_at, compiled


def test_footprint_reads_xla_memory_analysis():
  x, y = jnp.ones((64, 128)), jnp.ones((128, 32))
  compiled = jax.jit(lambda a, b: jnp.tanh(a @ b) @ b.T).lower(x, y).compile()
  fp = memory_plan.footprint(compiled)
  assert fp.arguments == (64 * 128 + 128 * 32) * 4  # the two float32 operands, exactly
  assert fp.outputs == 64 * 128 * 4
  assert fp.total == fp.arguments + fp.outputs - fp.aliased + fp.temporaries + fp.code


@pytest.mark.parametrize("limit, want", [(None, 14), (10**9, 14), (1000 + 300 * 14, 14), (1000 + 300 * 14 - 1, 13),
                                         (1000 + 300 * 5 + 150, 5), (1000 + 300, 1)])
def test_the_most_slots_that_fit(limit, want):
  compile_at, compiled = _fake()
  plan = memory_plan.fit_slots(compile_at, 14, limit)
  assert plan.slots == want and plan.compiled.k == want
  assert plan.footprint.total == 1000 + 300 * want <= (limit or np.inf)
  assert len(compiled) <= 4  # the requested size, one slot, the interpolation (and its check)
  if want < 14:
    assert "14 slots do not fit, reduced to" in plan.describe(groups=1)


def test_other_buffers_on_the_device_leave_less_room():
  """The device holds the call's arguments (1000 bytes) and 1200 more (a resident test set)."""
  compile_at, _ = _fake()
  plan = memory_plan.fit_slots(compile_at, 14, 1000 + 300 * 14, in_use=1000 + 1200)
  assert plan.others == 1200 and plan.slots == 10  # 1000 + 300 k <= 5200 - 1200
  assert "less 0.00 GiB of other buffers" in plan.describe(groups=1)
  assert memory_plan.fit_slots(compile_at, 14, 1000 + 300 * 14, in_use=500).slots == 14  # arguments not all there


def test_nothing_fits_is_one_line_with_the_figures():
  compile_at, _ = _fake(base=2 * memory_plan.GIB)
  with pytest.raises(PosejaxError) as error:
    memory_plan.fit_slots(compile_at, 4, memory_plan.GIB)
  message = str(error.value)
  assert "\n" not in message and "2.00 GiB per device" in message and "1.00 GiB" in message


def test_device_limit_prefers_the_stated_memory():
  class Device:
    def __init__(self, stats):
      self.stats = stats

    def memory_stats(self):
      return self.stats
  assert memory_plan.device_limit(2.5, Device({"bytes_limit": 10})) == int(2.5 * memory_plan.GIB)
  assert memory_plan.device_limit(0.0, Device({"bytes_limit": 10})) == 10
  assert memory_plan.device_limit(0.0, Device(None)) is None
  assert memory_plan.bytes_in_use(Device({"bytes_in_use": 7})) == 7 and memory_plan.bytes_in_use(Device(None)) == 0


def test_a_run_that_does_not_fit_trains_the_same_models_with_fewer_slots(data_dir, tmp_path, monkeypatch, capsys):
  """The straight run packs both models into one step; with a stated memory between one and two
  slots' footprint the run takes one slot, and every log point's metrics and the final weights
  are the same (the step compiled for another slot count may round the last float32 bits
  differently)."""
  from posejax.workdir import checkpoints as checkpointing
  from posejax import trainer
  from tests.test_trainer import _config, _records, _strip_timing

  seen = []
  footprint = memory_plan.footprint
  monkeypatch.setattr(memory_plan, "footprint", lambda c: seen.append(footprint(c)) or seen[-1])
  with pytest.raises(PosejaxError, match="with a single slot"):  # 1 byte: records both sizes, trains nothing
    trainer.train_and_evaluate(_config(data_dir, device_memory_gib=1 / memory_plan.GIB), str(tmp_path / "none"))
  assert not os.path.exists(tmp_path / "none" / "metrics.jsonl")
  two, one = seen[0].total, seen[1].total
  assert one < two

  straight = str(tmp_path / "straight")
  trainer.train_and_evaluate(_config(data_dir), straight)
  fitted = str(tmp_path / "fitted")
  capsys.readouterr()
  trainer.train_and_evaluate(_config(data_dir, device_memory_gib=(one + two) / 2 / memory_plan.GIB), fitted)
  out = capsys.readouterr().out
  assert "2 slots do not fit, reduced to 1" in out
  summaries = [json.load(open(os.path.join(w, "train_summary.json"))) for w in (straight, fitted)]
  assert [s["slots"] for s in summaries] == [2, 1]
  close = lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
  per_model = lambda workdir: [{k: v for k, v in _strip_timing(r).items() if k != "step"} for r in _records(workdir)]
  jax.tree.map(close, per_model(fitted), per_model(straight))  # the global step counts differ
  a = checkpointing.restore_for_eval(straight, "latest")
  b = checkpointing.restore_for_eval(fitted, "latest")
  jax.tree.map(close, b[1], a[1])
  # Rerun: finished at the end of the fitted schedule (the unfitted one would end sooner).
  capsys.readouterr()
  trainer.train_and_evaluate(_config(data_dir, device_memory_gib=(one + two) / 2 / memory_plan.GIB), fitted)
  assert f"training finished at step {summaries[1]['global_steps']}" in capsys.readouterr().out
