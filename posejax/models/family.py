"""Model families: what the rest of posejax asks of a kind of pose model, and their registry.

A family (config.model.family, recorded in a checkpoint's metadata['model']['family']) says
which hyper-parameters it records, how it builds its Flax module, which frames it reads for
which outputs (`Window`), its training loss and how it imports its reference checkpoints.
Window sampling, the vmapped step, evaluation, export and streaming ask only this and the
built model's `PoseModel` members, so a second family adds itself here and nowhere else.

    tcn   VideoPose3D's temporal convolutional network (posejax.models.tcn, .videopose3d)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

import flax.linen as nn
import jax

from posejax.common.errors import PosejaxError
from posejax.models import videopose3d
from posejax.models.tcn import causal_shift, receptive_field
from posejax.pose import losses


@runtime_checkable
class PoseModel(Protocol):
  """A built pose model (a Flax module) as consumers see it, whatever its family.

  `apply(variables, poses_2d (B, T, K, F), train=...) -> (B, T_out, J, 3)` as any Flax module.
  """

  @property
  def receptive_field(self) -> int:
    """Input frames per output frame (a sliding model) or per clip (a seq2seq model)."""

  @property
  def causal_shift(self) -> int:
    """Frames by which the input window is shifted back (causal models), else 0."""

  @property
  def pad(self) -> int:
    """Input frames on each side of an output frame: (receptive_field - 1) // 2."""

  def dilated(self) -> "PoseModel":
    """The whole-sequence form of the same module (same parameters): evaluation's form."""

  def one_frame(self) -> "PoseModel":
    """The cheapest form that computes one output frame from `receptive_field` input frames
    (same parameters): streaming's form."""

  def architecture(self) -> dict[str, Any]:
    """The hyper-parameters an exported model's metadata names, JSON-ready."""


@dataclasses.dataclass(frozen=True)
class Window:
  """Which input frames a model reads for which output frames.

  Attributes:
    receptive_field: input frames per output frame of a sliding model (the TCN: the product of
      its filter widths); the clip length of a seq2seq model.
    causal_shift: frames by which the input window is shifted back (causal models), else 0.
    output_frames: None: one output per input window position (a sliding model, as the TCN's
      dilated form: T frames in, T - receptive_field + 1 out); an int: the model predicts a
      fixed clip, reading `receptive_field` frames and returning that many.
  """
  receptive_field: int
  causal_shift: int = 0
  output_frames: int | None = None

  @property
  def pad(self) -> int:
    """Input frames on each side of an output frame beyond it: (receptive_field - 1) // 2 for a
    sliding model, 0 for a clip model (one output per input frame)."""
    return (self.receptive_field - 1) // 2 if self.output_frames is None else 0


@dataclasses.dataclass(frozen=True)
class Family:
  """A model family: plain functions of its recorded hyper-parameters (hparams).

  Attributes:
    name: config.model.family ('tcn').
    fields: the hyper-parameter names it records in a checkpoint's metadata['model'].
    build: (hparams, *, strided, dtype) -> the Flax module (a PoseModel); `strided`: the
      one-window training form where the family has one, `dtype`: the compute dtype.
    window: hparams -> the Window of the models it builds.
    loss: (predicted, target) (B, T, J, 3) each -> () its training loss.
    import_reference: (path, **options) -> ({'params', 'batch_stats'}, hparams) of a
      checkpoint of its reference implementation.
  """
  name: str
  fields: tuple[str, ...]
  build: Callable[..., nn.Module]
  window: Callable[[Mapping[str, Any]], Window]
  loss: Callable[[jax.Array, jax.Array], jax.Array]
  import_reference: Callable[..., tuple[dict[str, Any], dict[str, Any]]]


def _tcn_window(hparams: Mapping[str, Any]) -> Window:
  widths = tuple(int(w) for w in hparams["filter_widths"])
  return Window(receptive_field(widths), causal_shift(widths, bool(hparams["causal"])))


TCN = Family(name="tcn", fields=videopose3d.FIELDS, build=videopose3d.build, window=_tcn_window,
             loss=losses.mpjpe, import_reference=videopose3d.import_reference)

FAMILIES: dict[str, Family] = {f.name: f for f in (TCN,)}
DEFAULT = "tcn"  # the family of records that name none (checkpoints of earlier versions)


def get(name: str) -> Family:
  """The family called `name`; a one-line PosejaxError for an unknown one."""
  if name not in FAMILIES:
    raise PosejaxError(f"--config.model.family: {name!r} is not one of {', '.join(FAMILIES)}")
  return FAMILIES[name]


def of_hparams(hparams: Mapping[str, Any]) -> Family:
  """The family of a recorded spec (hparams['family']; absent: a TCN of an earlier version)."""
  return get(str(hparams.get("family", DEFAULT)))
