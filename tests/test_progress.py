"""Progress bars advance per compiled call as calls complete, with at most two in flight."""

import types

import numpy as np
import pytest

from posejax import trainer
from posejax.common import progress, sharding
from posejax.evaluation import protocols as evaluation, resident as device_eval
from posejax.training import engine
from test_evaluation_device import init_variables, labelled_data, stack, tiny_model


class Calls:
  """A fake device: records dispatches and completions; a call completes when waited on."""

  def __init__(self):
    self.events, self.in_flight, self.most_in_flight = [], 0, 0

  def dispatch(self, k: int) -> "Token":
    self.events.append(("dispatch", k))
    self.in_flight += 1
    self.most_in_flight = max(self.most_in_flight, self.in_flight)
    return Token(self, k)


class Token:
  def __init__(self, calls: Calls, k: int):
    self.calls, self.k, self.done = calls, k, False

  def block_until_ready(self):
    if not self.done:
      self.done = True
      self.calls.in_flight -= 1
      self.calls.events.append(("complete", self.k))
    return self


def _reported(events, updates):
  """Each update must follow its call's completion and precede the next one's."""
  completes = [k for kind, k in events if kind == "complete"]
  assert completes == sorted(completes) == list(range(len(updates)))


def test_completions_report_each_call_after_it_completes():
  calls, updates = Calls(), []
  completions = progress.Completions(lambda n: updates.append((n, calls.events[-1])))
  sizes = [4, 4, 4, 2]
  for k, n in enumerate(sizes):
    completions.dispatched(calls.dispatch(k), n)
    # Call k-1 completed (and was reported) after call k was dispatched: one queued behind it.
    assert [u[1] for u in updates] == [("complete", j) for j in range(k)]
  completions.drain()
  assert [u[0] for u in updates] == sizes and calls.most_in_flight == 2 and calls.in_flight == 0
  assert calls.events[:3] == [("dispatch", 0), ("dispatch", 1), ("complete", 0)]


def _fake_run(monkeypatch, calls: Calls):
  """A compiled call that counts its dispatches; its accumulator leaf is the call's token."""
  monkeypatch.setattr(progress, "marker", lambda leaf: leaf)
  counter = iter(range(1000))

  def compiled(state, acc, *args):
    return state, {"steps": calls.dispatch(next(counter))}
  return compiled


@pytest.mark.parametrize("path", ["device", "host"])
def test_segment_updates_per_call_on_completion(monkeypatch, path):
  calls, updates = Calls(), []
  layout = sharding.make_layout(1, 2)
  eng = types.SimpleNamespace(steps_per_call=4, layout=layout)
  inputs = np.zeros((14, 1, 3), np.int32)
  compiled = _fake_run(monkeypatch, calls)
  if path == "device":
    out = engine.run_segment_device(eng, compiled, None, None, None, inputs, 0, None, on_chunk=updates.append)
    want = [4, 4, 4, 2]
  else:
    batches = iter([{"poses_2d": np.zeros((1, 2, 3)), "poses_3d": np.zeros((1, 2, 3))}] * 14)
    out = engine.run_segment_host(eng, compiled, None, None, batches, inputs, 0, None, on_chunk=updates.append)
    want = [1] * 14
  assert out[2] == 14 and updates == want and sum(updates) == len(inputs)
  assert calls.most_in_flight <= 2 and calls.in_flight == 0
  _reported(calls.events, updates)


def test_segment_stops_with_the_calls_in_flight_reported(monkeypatch):
  calls, updates = Calls(), []
  eng = types.SimpleNamespace(steps_per_call=4, layout=sharding.make_layout(1, 2))
  stop = lambda: sum(updates) >= 4  # a signal seen once the first call has completed
  out = engine.run_segment_device(eng, _fake_run(monkeypatch, calls), None, None, None,
                                  np.zeros((40, 1, 3), np.int32), 0, None, should_stop=stop, on_chunk=updates.append)
  assert out[2] == 8 and updates == [4, 4] and calls.in_flight == 0


def test_bar_counts_samples_of_the_reported_steps():
  bar = progress.Bar([256, 256, 128, 0], "test", disable=True)
  bar.update(2)
  assert bar.samples == 512
  bar.update(2)
  assert bar.samples == 640 and bar.steps == 4
  bar.close()


def test_step_samples_count_the_real_slot_models():
  # 3 real models in 2 slots; 3 marks an empty slot (padding models never step).
  inputs = np.stack([np.array([[0, 1], [2, 3], [3, 3]]), np.zeros((3, 2), int), np.zeros((3, 2), int)], -1)
  assert trainer._step_samples(inputs, 3, 64).tolist() == [128, 64, 0]


def test_shown_overrides_the_terminal_check():
  with progress.shown(True):
    assert progress.enabled()
    with progress.shown(False):
      assert not progress.enabled()
    assert progress.enabled()
  assert not progress.enabled()  # pytest's captured stderr is no terminal


class RecordingBar(progress.Bar):
  made: list = []

  def __init__(self, per_step, desc, **kwargs):
    super().__init__(per_step, desc, **kwargs)
    self.per_step, self.updates = list(per_step), []
    RecordingBar.made.append(self)

  def update(self, steps):
    self.updates.append(steps)
    super().update(steps)


def test_evaluation_bar_advances_per_chunk_batch(monkeypatch):
  monkeypatch.setattr(progress, "Bar", RecordingBar)
  RecordingBar.made = []
  model = tiny_model()
  data, slices = labelled_data(), ["Eating", "Walking"]
  resident = evaluation.resident_test_set(data, slices, model, chunk=4, batch=2)
  variables = stack(init_variables(model, 20), init_variables(model, 21))
  device_eval.predict(model, variables, resident, tta=False)
  device_eval.predict_all(model, variables, resident, tta=False)
  routed, every = RecordingBar.made
  steps = resident.chunks.shape[0]
  assert steps > 1 and routed.updates == [1] * steps and sum(routed.per_step) == resident.plan.total_frames
  assert sum(every.updates) == len(every.per_step) and sum(every.per_step) == 2 * resident.plan.total_frames
