"""The absl flags parser of the entry points: config file and overrides checked before absl reads them."""

from __future__ import annotations

from typing import Callable, Sequence

from posejax.common import cli
from posejax.common.errors import PosejaxError
from posejax.config import config_file, validation


def absl_flags_parser(argv: Sequence[str], help_epilog: Callable[[], str] | None = None) -> list[str]:
  """`flags_parser` for absl.app.run: every flag problem is one line and exit status 2.

  `--help`/`--helpfull` print the usage (and `help_epilog()` after it) and exit with status 0,
  whatever else is on the command line. The config file and the names of the `--config.*`
  overrides are checked before absl parses them, so a missing file or a misspelled field
  (`--config.train.epoch`) is explained with the closest valid name instead of ml_collections'
  traceback.
  """
  from absl import flags
  kind = cli.help_request(argv)
  if kind is not None:
    cli.print_help(kind, help_epilog)
  try:
    if "config" in flags.FLAGS:
      overrides, path = cli.config_overrides(argv), cli.flag_value(argv, "config")
      if overrides and path is None:
        raise PosejaxError(f"--config.{overrides[0]}: an override needs --config FILE before it")
      if path is not None:
        validation.check_overrides(config_file.load_config_file(path), overrides)
    return flags.FLAGS(list(argv))
  except PosejaxError as e:
    cli.fail(cli.one_line(e))
  except flags.Error as e:
    cli.fail(cli.one_line(e))
  except Exception as e:  # ml_collections raises plain KeyError/AttributeError for some flag problems
    cli.fail(f"command line: {type(e).__name__}: {cli.one_line(e)}")
