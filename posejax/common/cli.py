"""What the command-line tools share: quiet logs, flag errors and failures as one line.

Every tool (train.py, eval.py, `python -m posejax.interop`, `python -m posejax.data.prepare_h36m`)
prints its own progress lines only: TensorFlow's C++ start-up lines and the INFO/WARNING lines
of orbax and JAX are silenced. Whatever a user can get wrong ends in one line on stderr,
`error: ...`, and exit status 2 (1 for an operating-system failure such as a full disk, 130 for
an interrupt), never in a traceback. posejax reports through print(); library log records
(orbax, JAX, asyncio) are silenced in these tools.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Any, Callable, NoReturn, Sequence

from posejax.common.errors import PosejaxError

# Before TensorFlow loads: no C++ INFO lines ("oneDNN custom operations are on" is printed
# whatever TF_CPP_MIN_LOG_LEVEL says unless oneDNN's TF kernels are off; posejax runs no TF
# math that they would speed up, only tf.data and summaries).
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0"}
_OVERRIDE = re.compile(r"^--?(?:no)?config\.([A-Za-z0-9_.]+)(?:=|$)")


def quiet_environment() -> None:
  """Sets the quiet defaults of QUIET_ENVIRONMENT (a user's own settings win)."""
  for key, value in QUIET_ENVIRONMENT.items():
    os.environ.setdefault(key, value)


def quiet_logging() -> None:
  """Silences library logging (orbax, JAX, asyncio). Call it in main: absl.app resets it.

  orbax logs a failed background save as ERROR with several tracebacks; posejax reports the
  same failure itself as one line, so nothing below CRITICAL is shown.
  """
  import logging as std_logging
  from absl import logging
  logging.set_verbosity(logging.FATAL)
  std_logging.getLogger().setLevel(std_logging.CRITICAL)
  sys.unraisablehook = _quiet_unraisable


def _quiet_unraisable(args: Any) -> None:
  """After a failed asynchronous save, orbax's futures call back into event loops it has closed;
  Python prints each such ignored RuntimeError as a traceback. Other cases print as usual."""
  if isinstance(args.exc_value, RuntimeError) and "Event loop is closed" in str(args.exc_value):
    return
  sys.__unraisablehook__(args)


def one_line(text: Any) -> str:
  """The first non-empty line of a message."""
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  return lines[0] if lines else ""


def fail(message: str, code: int = 2) -> NoReturn:
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(code)


def run_guarded(fn: Callable[..., Any], *args: Any, interrupted: str = "interrupted", where: str = "") -> Any:
  """Calls fn(*args); a PosejaxError, an OS error or an interrupt becomes one line and an exit status.

  `where` (e.g. '--workdir runs/x') names the place in an OS error that carries no file name.
  """
  try:
    return fn(*args)
  except PosejaxError as e:
    fail(one_line(e), 2)
  except OSError as e:  # a full disk, an unwritable folder: not a bug of posejax
    reason = e.strerror or one_line(e) or type(e).__name__
    fail(f"{e.filename}: {reason}" if getattr(e, "filename", None) else f"{where}: {reason}" if where else reason, 1)
  except KeyboardInterrupt:
    fail(interrupted, 130)


class ArgumentParser(argparse.ArgumentParser):
  """argparse with its usage errors on one line (`error: ... (see --help)`, exit status 2)."""

  def error(self, message: str) -> NoReturn:
    fail(f"{message} (see {self.prog} --help)", 2)


def flag_value(argv: Sequence[str], name: str) -> str | None:
  """The value of `--name=V` / `--name V` in argv (the last one), or None."""
  value = None
  for i, arg in enumerate(argv):
    if arg == "--":
      break
    match = re.match(rf"^--?{name}(=(.*))?$", arg)
    if match:
      value = match.group(2) if match.group(1) else (argv[i + 1] if i + 1 < len(argv) else None)
  return value


def config_overrides(argv: Sequence[str]) -> list[str]:
  """Field paths of the `--config.<path>` overrides in argv, in order."""
  paths = []
  for arg in argv:
    if arg == "--":
      break
    match = _OVERRIDE.match(arg)
    if match:
      paths.append(match.group(1))
  return paths


# absl's help flags; absl itself prints the help and exits with status 1.
_HELP = re.compile(r"^--?(help|helpshort|helpfull|\?)$")


def help_request(argv: Sequence[str]) -> str | None:
  """'full' for --helpfull, 'short' for --help/--helpshort/-?, None without a help flag."""
  for arg in argv[1:]:
    if arg == "--":
      break
    match = _HELP.match(arg)
    if match:
      return "full" if match.group(1) == "helpfull" else "short"
  return None


def print_help(kind: str, epilog: Callable[[], str] | None = None) -> NoReturn:
  """absl's usage (the main module's docstring and flags), then `epilog()`; exit status 0."""
  from absl import app
  app.usage(shorthelp=kind != "full", writeto_stdout=True)
  if kind != "full":
    print("\nTry --helpfull to get a list of all flags.")
  if epilog is not None:
    print("\n" + epilog())
  sys.stdout.flush()
  sys.exit(0)
