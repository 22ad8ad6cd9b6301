"""The fields of configs/default.py with their defaults and meanings (`python train.py --help`).

A field's meaning is read from configs/default.py itself, so the listing cannot drift from the
config: the comment at the end of its assignment, else the comment lines directly above it.
Every field has one (tests/test_config_fields.py fails on a field without it).
"""

from __future__ import annotations

import ast
import io
import pathlib
import textwrap
import tokenize
from posejax.config import config_file
from typing import Any

DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parents[2] / "configs" / "default.py"
HEADING = "Config fields (configs/default.py; override with --config.FIELD=VALUE)"
WIDTH = 110  # of the listing's lines
NAME_COLUMN = 40  # meanings start here; a longer `name = value` puts its meaning on the next line


def _comments(source: str) -> tuple[dict[int, str], set[int]]:
  """Comment text by line number, and the lines that hold code."""
  comments, code = {}, set()
  for token in tokenize.generate_tokens(io.StringIO(source).readline):
    if token.type == tokenize.COMMENT:
      comments[token.start[0]] = token.string.lstrip("#").strip()
    elif token.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                            tokenize.ENDMARKER):
      code.update(range(token.start[0], token.end[0] + 1))
  return comments, code


def _field_name(target: ast.expr) -> str | None:
  """'train.epochs' for the target `config.train.epochs`, None for any other target."""
  parts = []
  while isinstance(target, ast.Attribute):
    parts.append(target.attr)
    target = target.value
  if isinstance(target, ast.Name) and target.id == "config" and parts:
    return ".".join(reversed(parts))
  return None


def _is_group(value: ast.expr) -> bool:
  """`ml_collections.ConfigDict()`: a group of fields, not a field."""
  return (isinstance(value, ast.Call) and not value.args and not value.keywords
          and isinstance(value.func, (ast.Attribute, ast.Name))
          and getattr(value.func, "attr", getattr(value.func, "id", "")) == "ConfigDict")


def _meaning(node: ast.stmt, comments: dict[int, str], code: set[int]) -> str:
  """The trailing comment of an assignment, else the comment block right above it ('' if none)."""
  for line in range(node.end_lineno, node.lineno - 1, -1):
    if line in comments:
      return comments[line]
  block, line = [], node.lineno - 1
  while line in comments and line not in code:
    block.insert(0, comments[line])
    line -= 1
  return " ".join(block)


def field_meanings(path: str | pathlib.Path = DEFAULT_CONFIG) -> dict[str, str]:
  """Field name -> meaning for each `config.X = ...` assignment of get_config() in `path`."""
  source = pathlib.Path(path).read_text()
  comments, code = _comments(source)
  functions = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "get_config"]
  meanings = {}
  for node in ast.walk(functions[0]) if functions else ():
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and not _is_group(node.value):
      name = _field_name(node.targets[0])
      if name is not None:
        meanings[name] = _meaning(node, comments, code)
  return meanings


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
  """Dotted field name -> value of every field of a ConfigDict, groups expanded, in order."""
  import ml_collections
  fields = {}
  for key, value in config.items():
    name = f"{prefix}{key}"
    if isinstance(value, ml_collections.ConfigDict):
      fields.update(flatten(value, name + "."))
    else:
      fields[name] = value
  return fields


def _line(name: str, value: Any, meaning: str) -> str:
  head = f"  {name} = {value!r}"
  indent = " " * NAME_COLUMN
  if len(head) + 2 > NAME_COLUMN:
    return head + "\n" + textwrap.fill(meaning, WIDTH, initial_indent=indent, subsequent_indent=indent)
  return textwrap.fill(meaning, WIDTH, initial_indent=head.ljust(NAME_COLUMN), subsequent_indent=indent)


def listing(path: str | pathlib.Path = DEFAULT_CONFIG) -> str:
  """The help section: every field of get_config() in `path`, its default and its meaning."""
  path = pathlib.Path(path)
  if not path.is_file():
    return f"{HEADING}\n  ({path} not found: the listing needs a source checkout)"
  meanings = field_meanings(path)
  fields = flatten(config_file.load_config_file(str(path)))
  # In the file's order (groups together, as written); ConfigDict sorts its keys.
  names = [n for n in meanings if n in fields] + [n for n in fields if n not in meanings]
  return "\n".join([HEADING] + [_line(n, fields[n], meanings.get(n, "")) for n in names])
