"""The package's layers: no import cycle, no upward import, no late import, few top modules.

Layers, lowest first; a module may import its own subpackage and those below it. The top of
`posejax/` (the trainer and the `python -m posejax.<tool>` entry points) may import anything.
In-function imports of the package's own modules are allowed only where they open the heavy
optional dependency TensorFlow (tf.data, TFDS, TensorBoard, SavedModel export).
"""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "posejax"
LAYERS = ("common", "pose", "config", "data", "models", "workdir", "training", "evaluation", "tools")
TENSORFLOW_DOORS = {"posejax.common.tf_compat", "posejax.training.input_pipeline", "posejax.data.tfds_h36m"}
MAX_TOP_MODULES = 12


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(source: str, name: str, modules=MODULES) -> list[tuple[str, bool]]:
  """(imported package module, at module level) for every import in `source`."""
  tree = ast.parse(source)
  top = {id(node) for node in tree.body}
  found = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                 for a in node.names]
    else:
      continue
    found += [(t, id(node) in top) for t in targets if t in modules and t not in (name, "posejax")]
  return found


def graph(modules=MODULES) -> dict[str, set[str]]:
  return {name: {t for t, _ in imports_of(path.read_text(), name, modules)} for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
  """Every cycle found by a depth-first walk (each as the path that closes it)."""
  state, stack, found = {}, [], []

  def visit(node):
    state[node] = "open"
    stack.append(node)
    for nxt in sorted(edges.get(node, ())):
      if state.get(nxt) == "open":
        found.append(stack[stack.index(nxt):] + [nxt])
      elif nxt not in state:
        visit(nxt)
    stack.pop()
    state[node] = "done"

  for node in sorted(edges):
    if node not in state:
      visit(node)
  return found


def layer(name: str) -> int:
  parts = name.split(".")
  return LAYERS.index(parts[1]) if len(parts) > 2 and parts[1] in LAYERS else len(LAYERS)


def test_no_import_cycle():
  assert cycles(graph()) == []


def test_the_cycle_finder_finds_a_cycle():
  assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
  assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_upward_import():
  upward = [f"{m} -> {t}" for m, targets in graph().items() for t in targets if layer(t) > layer(m)]
  assert upward == []


def test_every_subpackage_is_a_layer():
  packages = {p.parent.relative_to(PACKAGE).parts[0] for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE}
  assert packages == set(LAYERS)


def test_no_late_import_of_the_package_except_tensorflow():
  late = [f"{name}: {target}" for name, path in MODULES.items()
          for target, at_top in imports_of(path.read_text(), name)
          if not at_top and target not in TENSORFLOW_DOORS]
  assert late == []


def test_few_modules_at_the_top():
  top = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
  assert len(top) <= MAX_TOP_MODULES, top


@pytest.mark.parametrize("source, expected", [
    ("from posejax.workdir import layout\n", [("posejax.workdir.layout", True)]),
    ("def f():\n  from posejax.common import errors\n", [("posejax.common.errors", False)]),
])
def test_imports_are_read_with_their_place(source, expected):
  assert imports_of(source, "posejax.x") == expected
