"""Seconds from SIGTERM to a saved checkpoint and the exit of `train.py`, against one call's time.

Runs `train.py` in a subprocess on synthetic data, waits until it has trained for `--after`
seconds (counted from the schedule line, after compilation), sends SIGTERM and times the exit.
The host keeps at most two compiled calls in flight, so the stop waits for about two calls plus
the save; `call_time_s` is the checkpoint's training time over the compiled calls it ran.

  python benchmarks/stop_latency.py                          # the quickstart's 15 models
  python benchmarks/stop_latency.py --config configs/ab243.py --set model.channels=128 \\
      --set train.batch_size=256 --after 60
  config=quickstart.py global_step=... calls=... call_time_s=... stop_latency_s=... latency_calls=...
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--config", default="configs/quickstart.py")
  parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                      help="config overrides, e.g. model.channels=128")
  parser.add_argument("--data", default=None, help="synthetic data folder (default: a scratch folder)")
  parser.add_argument("--synthetic", default="--frames 600", help="arguments of posejax.data.synthetic when "
                      "--data is not given, e.g. '--proportions h36m --scale 0.05'")
  parser.add_argument("--after", type=float, default=20.0, help="seconds of training before SIGTERM")
  args = parser.parse_args()

  scratch = tempfile.mkdtemp(prefix="stop_latency_")
  data = args.data or os.path.join(scratch, "data")
  if not args.data:
    subprocess.run([sys.executable, "-m", "posejax.data.synthetic", "--out", data] + args.synthetic.split(),
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
  workdir = os.path.join(scratch, "run")
  command = [sys.executable, os.path.join(ROOT, "train.py"), f"--config={args.config}", f"--workdir={workdir}",
             f"--config.data.dir={data}", "--config.data.keypoints=synthetic", "--config.train.progress=False",
             "--config.classifier.enabled=False"] + [f"--config.{s}" for s in args.set]
  process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
  lines = []
  for line in process.stdout:  # the schedule line comes after the step is compiled and planned
    lines.append(line)
    if line.startswith("INFO: memory:"):
      break
  else:
    sys.exit("train.py ended before training:\n" + "".join(lines[-20:]))
  time.sleep(args.after)
  sent = time.perf_counter()
  process.send_signal(signal.SIGTERM)
  rest = process.stdout.read()
  process.wait()
  latency = time.perf_counter() - sent
  stopped = re.search(r"stopped by signal 15 at global step (\d+)", rest)
  if not stopped:
    sys.exit("train.py did not stop on SIGTERM:\n" + rest[-2000:])
  step = int(stopped.group(1))

  from posejax.workdir import checkpoints as checkpointing  # noqa: E402  (after the run: this process stays light)
  config, _, _, _, metadata = checkpointing.restore_for_eval(workdir, step)
  per_call = int(config.train.steps_per_call)
  calls = -(-step // per_call)
  call_time = float(metadata["train_time_s"]) / max(calls, 1)
  print(f"config={os.path.basename(args.config)} overrides={','.join(args.set) or '-'} global_step={step} "
        f"calls={calls} steps_per_call={per_call} call_time_s={call_time:.3f} stop_latency_s={latency:.2f} "
        f"latency_calls={latency / call_time:.1f}", flush=True)


if __name__ == "__main__":
  main()
