"""Model slices: which model trains on which data, serves which action, and when it steps.

A run trains A models stacked on a leading axis, one per *slice*: common mode has one slice
('all', every selected action), action-based mode one slice per action. This module is the
one home of that concept: the slices of a run, the training records of each slice, the model
that serves a test action (oracle routing), and the compacted step schedule.

The schedule. Model a takes S_a optimizer steps in all (its budget). A run is cut at its log
points k = 1..P into segments; by log point k model a has taken exactly
`targets[k, a] = floor(s_k * S_a / S_max)` steps, with s_k = ceil(k * S_max / P), so every
model is at the same fraction of its budget at every log point (Table IV). Within a segment
the model-steps are packed into global steps of K *slots* (K <= A): each global step runs
the K slot models in one vmapped step, and no slot runs a model that would not update. The
packing is "largest remaining first" (each global step takes the K models with most steps
left in the segment; ties to the lower index), which is optimal (a segment of counts m takes
max(max m, ceil(sum m / K)) global steps) and depends only on the steps left, so a run resumed
mid-segment continues exactly as the uninterrupted one. With the action axis sharded over G
device groups, the models are split into G contiguous groups of M = A' / G and each group
packs its own models into its K / G slots (a slot only runs a model stored on its devices).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from posejax.common.errors import PosejaxError
from posejax.config.run_config import MODES, is_common
from posejax.data.dataset import PoseDataset, SequenceRecord
from posejax.pose.actions import ACTIONS, HUMANEVA_ACTIONS

COMMON = "all"
# Model ids of padding models (dummies that never step) start here; real models use their
# action's index in the Human3.6M table, len(ACTIONS) for the common model, and the ids after
# it for the actions of other datasets (HumanEva-I's 'Walking' shares Human3.6M's id).
PADDING_ID = 100
_OTHER_ACTIONS = tuple(a for a in HUMANEVA_ACTIONS if a not in ACTIONS)


def check_mode(mode: str) -> str:
  if mode not in MODES:
    raise PosejaxError(f"--config.mode: {mode!r} is not one of {', '.join(MODES)}")
  return mode


def slice_names(mode: str, actions: Sequence[str]) -> list[str]:
  """The slice of each model: ['all'] in common mode, else the actions in order."""
  check_mode(mode)
  if not actions:
    raise PosejaxError("--config.actions: no actions selected")
  return [COMMON] if is_common(mode) else list(actions)


def model_id(slice_name: str) -> int:
  """The stable id of a slice: distinct for every known action and for the common model."""
  if slice_name == COMMON:
    return len(ACTIONS)
  if slice_name in ACTIONS:
    return ACTIONS.index(slice_name)
  if slice_name in _OTHER_ACTIONS:
    return len(ACTIONS) + 1 + _OTHER_ACTIONS.index(slice_name)
  raise PosejaxError(f"slice {slice_name!r}: not an action of any dataset, no model id")


def model_ids(slices: Sequence[str], padded: int | None = None) -> np.ndarray:
  """(A',) int32 stable model ids: an action's id does not depend on the other slices, so an
  action trained alone is initialised, shuffled and dropped out exactly as inside a run with
  other actions."""
  ids = [model_id(s) for s in slices]
  extra = (padded or len(ids)) - len(ids)
  return np.asarray(ids + [PADDING_ID + i for i in range(extra)], np.int32)


def slice_records(dataset: PoseDataset, actions: Sequence[str],
                  mode: str) -> list[list[SequenceRecord]]:
  """The records of each slice, in the dataset's record order."""
  groups = [list(actions)] if check_mode(mode) == "common" else [[a] for a in actions]
  if not actions:
    raise PosejaxError("--config.actions: no actions selected")
  slices = [[r for r in dataset.sequences if r.action in group] for group in groups]
  for group, records in zip(groups, slices):
    if not records:
      raise PosejaxError(f"{dataset.source}: no training sequences for action(s) {', '.join(group)}")
  return slices


def examples_per_epoch(dataset: PoseDataset, actions: Sequence[str], mode: str,
                       augment: bool) -> np.ndarray:
  """n_a: examples (one per frame, twice that with flip augmentation) per slice, (A,) int64."""
  frames = [sum(r.num_frames for r in records) for records in slice_records(dataset, actions, mode)]
  return np.asarray(frames, np.int64) * (2 if augment else 1)


def route(actions_of_records: Sequence[str], slices: Sequence[str]) -> list[int]:
  """The model slice serving each record (oracle routing by its ground-truth action)."""
  if list(slices) == [COMMON]:
    return [0] * len(actions_of_records)
  missing = sorted(set(actions_of_records) - set(slices))
  if missing:
    raise PosejaxError(f"checkpoint has models for {', '.join(slices)}; no model for test "
                       f"action(s) {', '.join(missing)} (select them with --config.actions)")
  return [list(slices).index(a) for a in actions_of_records]


# --- The compacted schedule ------------------------------------------------------------------


def log_targets(steps: Sequence[int], lockstep_steps: Sequence[int]) -> np.ndarray:
  """(P, A) each model's step count at each log point: floor(s_k S_a / S_max).

  Args:
    steps: (A,) S_a.
    lockstep_steps: (P,) s_k, the log points on the scale of the longest budget
      (`schedules.log_steps`); the last is S_max, so the last row is S_a.
  """
  steps = np.asarray(steps, np.int64)
  return np.asarray(lockstep_steps, np.int64)[:, None] * steps[None] // int(steps.max())


def segment_length(counts: np.ndarray, slots: int) -> int:
  """Global steps that `slots` slots need for model-step counts (M,): max(max m, ceil(sum/K))."""
  counts = np.asarray(counts, np.int64)
  if counts.size == 0 or counts.sum() == 0:
    return 0
  return int(max(counts.max(), -(-int(counts.sum()) // slots)))


def pack_segment(counts: np.ndarray, slots: int) -> np.ndarray:
  """Largest-remaining-first packing of one group's model-steps into global steps.

  Args:
    counts: (M,) steps each of the group's models has left in the segment.
    slots: K_g, slots of the group per global step.
  Returns:
    (T, K_g) int32 model index (within the group) of each slot at each global step, M for an
    empty slot; T = `segment_length(counts, slots)`, each model appears counts[m] times and
    at most once per step.
  """
  left = np.asarray(counts, np.int64).copy()
  num_models = left.size
  rows = np.full((segment_length(left, slots), slots), num_models, np.int32)
  order_key = np.arange(num_models)
  for t in range(rows.shape[0]):
    # Stable sort on -left: most steps left first, ties to the lower index.
    chosen = np.lexsort((order_key, -left))[:slots]
    chosen = np.sort(chosen[left[chosen] > 0])
    rows[t, :chosen.size] = chosen
    left[chosen] -= 1
  assert not left.any()
  return rows


@dataclasses.dataclass(frozen=True)
class SlotLayout:
  """How the A' (padded) models and K slots are split over G action-device groups."""
  groups: int            # G, the mesh's action axis size
  models_per_group: int  # M = A' / G
  slots_per_group: int   # K / G

  @property
  def slots(self) -> int:
    return self.groups * self.slots_per_group


def pack_rows(counts: np.ndarray, layout: SlotLayout) -> np.ndarray:
  """Global steps of one segment for all groups.

  Args:
    counts: (A',) model-steps left in the segment (padding models: 0).
  Returns:
    (T, K) int32 GLOBAL model index of each slot, A' for an empty slot; slot s belongs to
    group s // (K / G) and only runs that group's models.
  """
  m, k = layout.models_per_group, layout.slots_per_group
  counts = np.asarray(counts, np.int64).reshape(layout.groups, m)
  packed = [pack_segment(c, k) for c in counts]
  length = max(p.shape[0] for p in packed)
  rows = np.full((length, layout.slots), layout.groups * m, np.int32)
  for g, p in enumerate(packed):
    local = np.where(p < m, p + g * m, layout.groups * m)
    rows[:p.shape[0], g * k:(g + 1) * k] = local
  return rows


def run_length(targets: np.ndarray, layout: SlotLayout, padded: int) -> tuple[np.ndarray, float]:
  """(global steps of each segment (P,), useful fraction) of a whole run's schedule.

  The useful fraction is the share of computed model-steps that update a model:
  sum S_a / (K * total global steps).
  """
  targets = np.asarray(targets, np.int64)
  full = np.zeros((targets.shape[0], padded), np.int64)
  full[:, :targets.shape[1]] = targets
  counts = np.diff(np.concatenate([np.zeros((1, padded), np.int64), full]), axis=0)
  m, k = layout.models_per_group, layout.slots_per_group
  lengths = np.asarray([max(segment_length(c, k) for c in row.reshape(layout.groups, m)) for row in counts])
  total = int(lengths.sum())
  return lengths, float(targets[-1].sum() / max(total * layout.slots, 1))


MIN_USEFUL = 0.97


def choose_slots(targets: np.ndarray, groups: int, padded: int, slots: int = 0,
                 min_useful: float = MIN_USEFUL) -> tuple[SlotLayout, float]:
  """The slot layout: the most slots (widest vmapped step, fewest global steps) whose useful
  fraction is at least `min_useful`, else the layout with the highest useful fraction.

  Args:
    targets: (P, A) `log_targets` of the real models.
    groups: G, the action axis size of the mesh (divides `padded`).
    padded: A', models incl. padding.
    slots: K forced by config (0: automatic); rounded up to a multiple of G.
  Returns:
    (layout, useful fraction).
  """
  m = padded // groups
  if slots:
    candidates = [min(-(-int(slots) // groups), m)]
  else:
    candidates = range(m, 0, -1)
  scored = [(SlotLayout(groups, m, k), run_length(targets, SlotLayout(groups, m, k), padded)[1])
            for k in candidates]
  for layout, useful in scored:
    if useful >= min_useful:
      return layout, useful
  return max(scored, key=lambda item: item[1])


def segment_rows(positions: np.ndarray, target: np.ndarray, layout: SlotLayout) -> np.ndarray:
  """(T, K) slot rows that take every model from `positions` (A',) to `target` (A',) steps."""
  left = np.asarray(target, np.int64) - np.asarray(positions, np.int64)
  if np.any(left < 0):
    raise PosejaxError(f"schedule: models are past their log-point targets ({positions} > {target})")
  return pack_rows(left, layout)


def row_positions(rows: np.ndarray, positions: np.ndarray) -> np.ndarray:
  """(T, K) own step count of each slot's model when it runs (0 for empty slots).

  Args:
    rows: (T, K) global model index per slot, A' = len(positions) for empty slots.
    positions: (A',) models' step counts before the first row.
  """
  padded = len(positions)
  onehot = rows[..., None] == np.arange(padded)  # (T, K, A')
  before = np.cumsum(onehot.any(axis=1), axis=0) - onehot.any(axis=1)  # steps taken before row t
  pos = np.asarray(positions, np.int64)[None] + before  # (T, A')
  safe = np.minimum(rows, padded - 1)
  return np.where(rows < padded, np.take_along_axis(pos, safe, axis=1), 0).astype(np.int32)
