#!/usr/bin/env bash
# Regenerates the quickstart figures quoted in README.md and configs/quickstart.py: runs the
# README's first command (action-based and common quickstart runs, then the comparison) in a
# scratch folder and prints each run's final Protocol #1 / MPJVE averages and training time.
#   bash scripts/quickstart_figures.sh [SCRATCH_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="${1:-$(mktemp -d)}"
data="$scratch/data/synthetic"
python train.py --config configs/quickstart.py --workdir "$scratch/quick_ab" --config.data.dir="$data" \
    --config.train.progress=False
python train.py --config configs/quickstart.py --config.mode=common --workdir "$scratch/quick_common" \
    --config.data.dir="$data" --config.train.progress=False
python eval.py --compare "$scratch/quick_common" "$scratch/quick_ab" --out "$scratch/comparison"
python - "$scratch" <<'PY'
import json, sys
for name in ("quick_ab", "quick_common"):
  s = json.load(open(f"{sys.argv[1]}/{name}/train_summary.json"))
  a = s["final"]["average"]
  print(f"figure run={name} mpjpe_mm={a['mpjpe']:.1f} mpjve_mm={a['mpjve']:.2f} train_time_s={s['train_time_s']:.0f} "
        f"compile_time_s={s['compile_time_s']:.0f} samples={sum(s['samples'].values())} global_steps={s['global_steps']} "
        f"slots={s['slots']} useful_fraction={s['useful_fraction']:.3f}")
steps = json.load(open(f"{sys.argv[1]}/quick_ab/train_summary.json"))["global_steps"]
ab = json.load(open(f"{sys.argv[1]}/quick_ab/eval/step_{steps}/final/results.json"))
for mode, r in ab.get("routings", {}).items():  # the AB models routed without labels beside oracle
  print(f"figure run=quick_ab routing={mode} mpjpe_mm={r['average']['mpjpe']:.1f} mpjve_mm={r['average']['mpjve']:.2f}")
if "classifier" in ab:
  c = ab["classifier"]
  print(f"figure classifier sequence_accuracy={c['sequence_accuracy']:.3f} frame_accuracy={c['frame_accuracy']:.3f} "
        f"train_time_s={c.get('train_time_s', 0):.0f}")
PY
