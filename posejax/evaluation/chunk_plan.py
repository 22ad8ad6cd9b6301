"""How evaluation cuts sequences into fixed-shape chunk batches (`posejax.evaluation.resident`).

Sequences lie end to end on one flat frame axis. Each is cut into chunks of `chunk` output
frames (a chunk computes `chunk + RF - 1` input frames, its window clipped to the sequence:
the reference's edge padding); the chunks of the sequences routed to each model slice are
padded to equal counts and grouped into steps of `batch` chunks per slice, so one compiled
loop runs every step. `chunk` shrinks to a power-of-two fraction when the sequences are short
(`efficient_chunk`), and `batch` defaults to about `frames_per_step()` output frames.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import jax
import numpy as np

from posejax.common.errors import PosejaxError

# Output frames per chunk batch over all slices when `batch` is None: large steps fill an
# accelerator; on XLA:CPU steps that stay in cache are faster (measured 2x at 16384 vs 65536).
FRAMES_PER_STEP = 65536
CPU_FRAMES_PER_STEP = 16384


def frames_per_step() -> int:
  """FRAMES_PER_STEP, or CPU_FRAMES_PER_STEP on XLA:CPU."""
  return CPU_FRAMES_PER_STEP if jax.default_backend() == "cpu" else FRAMES_PER_STEP


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
  """Fixed-shape chunking of sequences routed to model slices.

  Sequences live in one flat frame axis (`offsets`, `lengths`); chunk `c` of slice `a` reads
  sequence `chunk_seq[a, c]` from output frame `chunk_start[a, c]` on. `chunk_seq == -1`
  marks padding chunks (they read frame 0 and their outputs are dropped).
  """

  offsets: np.ndarray      # (S,) int64 first flat frame of each sequence
  lengths: np.ndarray      # (S,) int64
  chunk_seq: np.ndarray    # (A, C) int64, C a multiple of `batch`
  chunk_start: np.ndarray  # (A, C) int64
  chunk: int
  batch: int
  receptive_field: int
  causal_shift: int

  @property
  def total_frames(self) -> int:
    return int(self.lengths.sum())


def plan_chunks(lengths_per_slice: Sequence[Sequence[int]], *, chunk: int, batch: int | None,
                receptive_field: int, causal_shift: int = 0) -> ChunkPlan:
  """Chunks for sequences grouped by slice; flat order is slice-major, then list order.

  `batch` = chunks per slice and step; None picks about `frames_per_step()` output frames per step
  over all slices, at most the largest slice's chunk count (little padding on small sets).
  """
  lengths = np.asarray([int(n) for group in lengths_per_slice for n in group], np.int64)
  offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
  bounds = np.cumsum([0] + [len(group) for group in lengths_per_slice])
  groups = [list(range(bounds[a], bounds[a + 1])) for a in range(len(lengths_per_slice))]
  return plan_groups(offsets, lengths, groups, chunk=chunk, batch=batch, receptive_field=receptive_field,
                     causal_shift=causal_shift)


def efficient_chunk(lengths: np.ndarray, chunk: int, receptive_field: int, smallest: int = 16) -> int:
  """Output frames per chunk: `chunk`, or a power-of-two fraction of it (down to `smallest`)
  when that computes fewer input frames, sum of ceil(L / c) * (c + RF - 1) over the routed
  sequences (short sequences in long chunks are mostly padding). Ties keep the larger chunk."""
  candidates = [int(chunk)]
  while candidates[-1] % 2 == 0 and candidates[-1] // 2 >= smallest:
    candidates.append(candidates[-1] // 2)
  cost = lambda c: int(np.sum(-(-np.asarray(lengths, np.int64) // c) * (c + receptive_field - 1)))
  return min(candidates, key=lambda c: (cost(c), -c))


def plan_groups(offsets: np.ndarray, lengths: np.ndarray, groups: Sequence[Sequence[int]], *, chunk: int,
                batch: int | None, receptive_field: int, causal_shift: int = 0) -> ChunkPlan:
  """Chunks of flat sequences (`offsets`, `lengths`: (S,)) routed to slices: slice a runs the
  sequences `groups[a]` (flat indices; a sequence may be in several groups or in none)."""
  if chunk < 1 or (batch is not None and batch < 1):
    raise PosejaxError(f"evaluation chunk ({chunk}) and batch ({batch}) must be positive")
  lengths = np.asarray(lengths, np.int64)
  if np.any(lengths < 1):
    raise PosejaxError("evaluation: every sequence needs at least one frame")
  routed = np.asarray([int(lengths[seq]) for group in groups for seq in group], np.int64)
  chunk = efficient_chunk(routed, chunk, receptive_field)
  per_slice = [[(int(seq), start) for seq in group for start in range(0, int(lengths[seq]), chunk)]
               for group in groups]
  max_chunks = max([len(entries) for entries in per_slice] + [1])
  if batch is None:
    batch = max(1, min(max_chunks, frames_per_step() // (chunk * max(len(groups), 1))))
  count = -(-max_chunks // batch) * batch
  chunk_seq = np.full((len(per_slice), count), -1, np.int64)
  chunk_start = np.zeros((len(per_slice), count), np.int64)
  for a, entries in enumerate(per_slice):
    if entries:
      chunk_seq[a, :len(entries)], chunk_start[a, :len(entries)] = np.asarray(entries).T
  return ChunkPlan(np.asarray(offsets, np.int64), lengths, chunk_seq, chunk_start, chunk, batch,
                   receptive_field, causal_shift)


def chunk_table(plan: ChunkPlan) -> np.ndarray:
  """(steps, A, batch, 3) int32 per chunk: its sequence's first flat frame, the sequence's length
  (0 marks a padding chunk), its first output frame in the sequence."""
  padding = plan.chunk_seq < 0
  seq = np.maximum(plan.chunk_seq, 0)
  offset = np.append(plan.offsets, 0)[seq]
  length = np.where(padding, 0, np.append(plan.lengths, 0)[seq])
  slices, count = plan.chunk_seq.shape
  chunks = np.stack([offset, length, plan.chunk_start], -1).reshape(slices, count // plan.batch, plan.batch, 3)
  return chunks.transpose(1, 0, 2, 3).astype(np.int32)
