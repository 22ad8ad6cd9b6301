"""Action tables of the datasets, the mapping from sequence names to actions, action filters.

Both training modes and evaluation group by `action_of(sequence_name)`: the canonical
spelling (`TakingPhoto` -> `Photo`, `WalkingDog` -> `WalkDog`) of the text before the first
space ('Walking 1 chunk0' -> 'Walking' for HumanEva-I).

An action selection (`config.actions`) is matched in one of two ways (`config.action_match`):

* 'exact' (default): canonical action names; a name never aliases another action.
* 'prefix': the reference's `-a` filter: a sequence is kept when its name starts with one of
  the filter strings, so 'Sitting' also takes 'SittingDown', 'Walk' takes 'Walking', 'WalkDog'
  and 'WalkTogether', and 'Walking 1' only the first Walking trial. The actions (models in
  action-based mode) are those of the kept sequences.
"""

from __future__ import annotations

from typing import Sequence

from posejax.common.errors import PosejaxError

# Column order of the paper's tables.
ACTIONS: tuple[str, ...] = (
    "Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases",
    "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether")

ABBREVIATIONS: dict[str, str] = dict(zip(ACTIONS, (
    "Dir.", "Disc.", "Eat", "Greet", "Phone", "Photo", "Pose", "Purch.", "Sit", "SitD.", "Smoke",
    "Wait", "WkD.", "Walk", "WkT.")))

# HumanEva-I trial names: the paper's table columns (Walk, Jog, Box) first, then the two
# actions it does not evaluate.
HUMANEVA_ACTIONS: tuple[str, ...] = ("Walking", "Jog", "Box", "Gestures", "ThrowCatch")

DATASET_ACTIONS: dict[str, tuple[str, ...]] = {"h36m": ACTIONS, "humaneva15": HUMANEVA_ACTIONS}
MATCHES = ("exact", "prefix")

# Raw release spellings that differ from the canonical names.
_RAW_SPELLINGS = {"TakingPhoto": "Photo", "WalkingDog": "WalkDog"}


def canonical_sequence_name(raw: str) -> str:
  """'TakingPhoto 1' -> 'Photo 1', 'WalkingDog' -> 'WalkDog'; other names unchanged."""
  base, sep, rest = raw.partition(" ")
  return _RAW_SPELLINGS.get(base, base) + sep + rest


def action_of(sequence_name: str, known: Sequence[str] = ACTIONS) -> str:
  """The canonical action of a sequence name ('Sitting 1' -> 'Sitting').

  Raises:
    PosejaxError: the name does not belong to any of the `known` actions.
  """
  action = canonical_sequence_name(sequence_name).split(" ")[0]
  if action not in known:
    raise PosejaxError(
        f"sequence {sequence_name!r}: unknown action {action!r} (known: {', '.join(known)})")
  return action


def _filter_names(spec: str | Sequence[str] | None) -> list[str] | None:
  """The canonical filter strings of a selection, or None for every action ('*', 'all', empty)."""
  if spec is None:
    return None
  names = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
  names = [canonical_sequence_name(n) for n in names if n]
  return None if not names or names in (["*"], ["all"]) else names


def check_match(match: str) -> str:
  if match not in MATCHES:
    raise PosejaxError(f"--config.action_match: {match!r} is not one of {', '.join(MATCHES)}")
  return match


def prefix_selects(prefix: str, action: str) -> bool:
  """Whether some sequence of `action` can start with `prefix`.

  The action is the text before the first space of a name, so a prefix without a space
  selects the actions it begins, and one with a space ('Walking 1') only its first word.
  """
  return action.startswith(prefix) if " " not in prefix else prefix.split(" ")[0] == action


def resolve_actions(spec: str | Sequence[str] | None, known: Sequence[str] = ACTIONS,
                    match: str = "exact") -> tuple[str, ...]:
  """Validates an action selection; returns the selected actions in table order.

  Args:
    spec: None, '*' or 'all' for every action; a comma-separated string or a sequence of
      canonical names (raw spellings such as 'TakingPhoto' are accepted) or, with
      match='prefix', of sequence-name prefixes.
    known: the dataset's action table (`DATASET_ACTIONS`).
    match: 'exact' or 'prefix' (see the module docstring).

  Raises:
    PosejaxError: a name that selects no action (the message lists the known ones).
  """
  names = _filter_names(spec)
  if names is None:
    return tuple(known)
  if check_match(match) == "exact":
    unknown = [n for n in names if n not in known]
    selected = set(names)
  else:
    unknown = [n for n in names if not any(prefix_selects(n, a) for a in known)]
    selected = {a for a in known if any(prefix_selects(n, a) for n in names)}
  if unknown:
    hint = ""
    if match == "exact" and all(any(prefix_selects(n, a) for a in known) for n in unknown):
      hint = "; --config.action_match=prefix selects by name prefix as the reference's -a does"
    raise PosejaxError(f"--config.actions: unknown action(s) {', '.join(unknown)} "
                       f"(known: {', '.join(known)}{hint})")
  return tuple(a for a in known if a in selected)


def sequence_prefixes(spec: str | Sequence[str] | None, match: str) -> tuple[str, ...] | None:
  """The sequence-name prefixes a 'prefix' selection keeps; None when every name is kept
  (exact matching, or '*')."""
  names = _filter_names(spec)
  return None if check_match(match) == "exact" or names is None else tuple(names)


def keeps(name: str, prefixes: Sequence[str] | None) -> bool:
  """Whether the reference's prefix filter keeps the (canonical) sequence `name`."""
  return prefixes is None or any(canonical_sequence_name(name).startswith(p) for p in prefixes)
