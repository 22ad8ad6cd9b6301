"""The model, the step, the losses, the device sampler, the engine and evaluation import no
TensorFlow (it is heavy, and accelerator images for benchmarks have none)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_accelerator_path_imports_no_tensorflow():
  code = ("import sys\n"
          "import posejax.model, posejax.train_step, posejax.losses, posejax.sampling, posejax.engine, "
          "posejax.slices, posejax.evaluation, posejax.schedules, posejax.sharding\n"
          "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_datasets'))\n"
          "print(','.join(bad))\n")
  env = dict(os.environ, PYTHONPATH=ROOT, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.strip() == ""
