"""Tests for posejax.common.cli: override parsing, one-line failures and their exit statuses."""

import errno
import sys
import types

import pytest

from posejax.common import cli
from posejax.common.errors import PosejaxError


def test_config_overrides_and_flag_values_are_read_from_argv():
  argv = ["train.py", "--config", "c.py", "--config.train.epochs=3", "--noconfig.train.augment",
          "-config.model.channels", "8", "--workdir=w", "--", "--config.ignored=1"]
  assert cli.config_overrides(argv) == ["train.epochs", "train.augment", "model.channels"]
  assert cli.flag_value(argv, "config") == "c.py" and cli.flag_value(argv, "workdir") == "w"
  assert cli.flag_value(["x", "--config=a.py:arg"], "config") == "a.py:arg"
  assert cli.flag_value(["x"], "config") is None


@pytest.mark.parametrize("error,code,line", [
    (PosejaxError("--workdir x: bad\nsecond line"), 2, "error: --workdir x: bad"),
    (OSError(errno.ENOSPC, "No space left on device", "/w/metrics.jsonl"), 1,
     "error: /w/metrics.jsonl: No space left on device"),
    (OSError(errno.ENOSPC, "No space left on device"), 1, "error: --workdir w: No space left on device"),
    (KeyboardInterrupt(), 130, "error: interrupted"),
])
def test_run_guarded_turns_failures_into_one_line(error, code, line, capsys):
  def fn():
    raise error
  with pytest.raises(SystemExit) as info:
    cli.run_guarded(fn, where="--workdir w")
  assert info.value.code == code and capsys.readouterr().err == line + "\n"
  assert cli.run_guarded(lambda x: x + 1, 1) == 2


def test_argument_parser_errors_are_one_line(capsys):
  parser = cli.ArgumentParser(prog="tool")
  parser.add_argument("--out", required=True)
  with pytest.raises(SystemExit) as info:
    parser.parse_args([])
  assert info.value.code == 2
  assert capsys.readouterr().err == "error: the following arguments are required: --out (see tool --help)\n"


def test_quiet_unraisable_drops_only_closed_event_loop_noise(monkeypatch):
  seen = []
  monkeypatch.setattr(sys, "__unraisablehook__", seen.append)
  noise = types.SimpleNamespace(exc_value=RuntimeError("Event loop is closed"))
  other = types.SimpleNamespace(exc_value=ValueError("real"))
  cli._quiet_unraisable(noise)
  cli._quiet_unraisable(other)
  assert seen == [other]


def test_help_flags_are_recognized_before_the_separator():
  assert cli.help_request(["t", "--config", "c.py", "--help"]) == "short"
  assert cli.help_request(["t", "-?"]) == cli.help_request(["t", "--helpshort"]) == "short"
  assert cli.help_request(["t", "-helpfull"]) == "full"
  assert cli.help_request(["t", "--", "--help"]) is None
  assert cli.help_request(["--help", "--helpers=1", "--nohelp"]) is None  # argv[0] is the program
