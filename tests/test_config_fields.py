"""Tests for posejax.config.fields and the help of the command-line tools."""

import os
import subprocess
import sys
import textwrap

import pytest

from configs import default
from posejax.config import fields as config_fields

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_default_field_has_a_meaning():
  fields = config_fields.flatten(default.get_config())
  meanings = config_fields.field_meanings()
  assert set(meanings) == set(fields)  # no field missed, none that get_config() does not define
  assert [name for name in fields if not meanings[name].strip()] == []


def test_meanings_are_trailing_comments_else_the_block_above(tmp_path):
  path = tmp_path / "c.py"
  path.write_text(textwrap.dedent('''\
      import ml_collections
      # Not inside get_config.
      def get_config():
        config = ml_collections.ConfigDict()
        config.a = "x # y"  # trailing wins
        # Unrelated note.

        config.b = 1
        # Two lines
        # above.
        config.c = (1,
                    2)
        config.g = ml_collections.ConfigDict()
        config.g.d = 3  # in a group
        config.g.e = (4,  # first line
                      5)
        return config
      '''))
  assert config_fields.field_meanings(path) == {
      "a": "trailing wins", "b": "", "c": "Two lines above.", "g.d": "in a group", "g.e": "first line"}


def test_listing_shows_every_field_with_its_default():
  text = config_fields.listing()
  lines = text.splitlines()
  assert lines[0] == config_fields.HEADING
  for name, value in config_fields.flatten(default.get_config()).items():
    assert sum(line.startswith(f"  {name} = {value!r}") for line in lines) == 1, name
  assert "  train.epochs = 60" in text and "-e: common epochs" in text


def _run(*args):
  return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                        env=dict(os.environ, PYTHONPATH=REPO))


@pytest.mark.parametrize("flag", ["--help", "--helpfull"])
def test_train_help_exits_0_with_flags_and_config_fields(flag):
  result = _run("train.py", flag)
  assert result.returncode == 0, result.stderr
  assert "--workdir" in result.stdout and "--config" in result.stdout and result.stderr == ""
  flags_end, fields = result.stdout.index("--workdir"), result.stdout.index(config_fields.HEADING)
  assert flags_end < fields and "  model.channels = 1024" in result.stdout[fields:]


def test_eval_help_exits_0_with_its_flags():
  result = _run("eval.py", "--help", "--workdir", "x")
  assert result.returncode == 0, result.stderr
  assert "--checkpoint" in result.stdout and "--viz_subject" in result.stdout and result.stderr == ""
