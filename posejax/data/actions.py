"""The 15 canonical Human3.6M actions and the mapping from sequence names to actions.

Both training modes and evaluation group by `action_of(sequence_name)`: the canonical
spelling (`TakingPhoto` -> `Photo`, `WalkingDog` -> `WalkDog`) of the text before the first
space. This never aliases actions, unlike the reference's prefix filter (`Sitting` would also
take `SittingDown`).
"""

from __future__ import annotations

from typing import Sequence

from posejax.errors import PosejaxError

# Column order of the paper's tables.
ACTIONS: tuple[str, ...] = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases",
    "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether")

ABBREVIATIONS: dict[str, str] = dict(zip(ACTIONS, (
    "Dir.", "Disc.", "Eat", "Greet", "Phone", "Photo", "Pose", "Purch.", "Sit", "SitD.", "Smoke",
    "Wait", "WkD.", "Walk", "WkT.")))

# Raw release spellings that differ from the canonical names.
_RAW_SPELLINGS = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog"}


def canonical_sequence_name(raw: str) -> str:
  """'TakingPhoto 1' -> 'Photo 1', 'WalkingDog' -> 'WalkDog'; other names unchanged."""
  base, sep, rest = raw.partition(" ")
  return _RAW_SPELLINGS.get(base, base) + sep + rest


def action_of(sequence_name: str) -> str:
  """The canonical action of a sequence name ('Sitting 1' -> 'Sitting').

  Raises:
    PosejaxError: the name does not belong to any of the 15 actions.
  """
  action = canonical_sequence_name(sequence_name).split(" ")[0]
  if action not in ABBREVIATIONS:
    raise PosejaxError(
        f"sequence {sequence_name!r}: unknown action {action!r} (known: {', '.join(ACTIONS)})")
  return action


def resolve_actions(spec: str | Sequence[str] | None) -> tuple[str, ...]:
  """Validates an action selection, returned in table order.

  Args:
    spec: None, '*' or 'all' for every action; a comma-separated string or a sequence of
      canonical names (raw spellings such as 'TakingPhoto' are accepted).

  Raises:
    PosejaxError: an unknown action name (the message lists the known ones).
  """
  if spec is None:
    return ACTIONS
  names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
  names = [n for n in names if n]
  if not names or names in (["*"], ["all"]):
    return ACTIONS
  unknown = [n for n in names if canonical_sequence_name(n) not in ABBREVIATIONS]
  if unknown:
    raise PosejaxError(
        f"--config.actions: unknown action(s) {', '.join(unknown)} (known: {', '.join(ACTIONS)})")
  selected = {canonical_sequence_name(n) for n in names}
  return tuple(a for a in ACTIONS if a in selected)
