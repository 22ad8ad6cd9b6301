"""Which modules may import TensorFlow, derived from the package itself.

TensorFlow is heavy and accelerator images for benchmarks have none, so only the tf.data and
TFDS doors import it at module level: every other module of the package (found by walking it)
must import without loading TensorFlow, each in a fresh interpreter.
"""

import ast
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "posejax"
TF_ROOTS = ("tensorflow", "tensorflow_datasets")


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: pathlib.Path) -> set[str]:
  """Modules imported at module level (not inside functions) by the file at `path`."""
  names = set()
  for node in ast.parse(path.read_text()).body:
    if isinstance(node, ast.Import):
      names.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      names.add(node.module)
      names.update(f"{node.module}.{a.name}" for a in node.names)
  return names


def tensorflow_modules() -> set[str]:
  """Package modules that load TensorFlow at import: directly, or through another such module."""
  imports = {module_name(p): top_level_imports(p) for p in PACKAGE.rglob("*.py")}
  heavy = {m for m, names in imports.items() if any(n.split(".")[0] in TF_ROOTS for n in names)}
  while True:
    more = {m for m, names in imports.items() if m not in heavy and names & heavy}
    if not more:
      return heavy
    heavy |= more


def test_only_the_input_doors_import_tensorflow():
  assert tensorflow_modules() == {"posejax.common.tf_compat", "posejax.training.input_pipeline",
                                  "posejax.data.tfds_h36m"}


def test_every_other_module_imports_without_tensorflow():
  modules = sorted(module_name(p) for p in PACKAGE.rglob("*.py") if module_name(p) not in tensorflow_modules())
  assert "posejax.training.step" in modules and "posejax.evaluation.protocols" in modules
  code = ("import importlib, sys\n"
          f"for name in {modules!r}:\n"
          "  importlib.import_module(name)\n"
          "  bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets'))\n"
          "  if bad:\n"
          "    print(name); break\n")
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == "", f"{out.stdout.strip()} loads TensorFlow"
