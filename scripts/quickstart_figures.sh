#!/usr/bin/env bash
# Regenerates the quickstart figures quoted in README.md and configs/quickstart.py: runs the
# README's first command (action-based and common quickstart runs, then the comparison) in a
# scratch folder, then the routing evaluation the README quotes, and prints each step's wall
# time, each run's final Protocol #1 / MPJVE averages and training time, the routings and the
# action classifier's accuracy as `figure key=value` lines.
#   bash scripts/quickstart_figures.sh [SCRATCH_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="${1:-$(mktemp -d)}"
data="$scratch/data/synthetic"
timed() {  # timed NAME COMMAND...: runs it and prints its wall time
  local name="$1" start end
  shift
  start=$(date +%s.%N)
  "$@"
  end=$(date +%s.%N)
  python -c "import sys; print(f'figure step={sys.argv[1]} wall_s={float(sys.argv[3]) - float(sys.argv[2]):.1f}')" \
      "$name" "$start" "$end"
}
first=$(date +%s.%N)
timed train_ab python train.py --config configs/quickstart.py --workdir "$scratch/quick_ab" --config.data.dir="$data" \
    --config.train.progress=False
timed train_common python train.py --config configs/quickstart.py --config.mode=common \
    --workdir "$scratch/quick_common" --config.data.dir="$data" --config.train.progress=False
timed compare python eval.py --compare "$scratch/quick_common" "$scratch/quick_ab" --out "$scratch/comparison"
python -c "import sys; print(f'figure step=first_command wall_s={float(sys.argv[2]) - float(sys.argv[1]):.1f}')" \
    "$first" "$(date +%s.%N)"
timed routings python eval.py --workdir "$scratch/quick_ab" --routing=soft --common "$scratch/quick_common" \
    --cross_action --out "$scratch/routings"
python - "$scratch" <<'PY'
import json, sys
scratch = sys.argv[1]
for name in ("quick_ab", "quick_common"):
  s = json.load(open(f"{scratch}/{name}/train_summary.json"))
  a = s["final"]["average"]
  print(f"figure run={name} mpjpe_mm={a['mpjpe']:.1f} mpjve_mm={a['mpjve']:.2f} train_time_s={s['train_time_s']:.1f} "
        f"compile_time_s={s['compile_time_s']:.1f} samples={sum(s['samples'].values())} "
        f"global_steps={s['global_steps']} slots={s['slots']} useful_fraction={s['useful_fraction']:.3f}")
doc = json.load(open(f"{scratch}/routings/results.json"))
for mode, r in doc.get("routings", {}).items():  # the AB models routed without labels beside oracle
  print(f"figure run=quick_ab routing={mode} mpjpe_mm={r['average']['mpjpe']:.1f} mpjve_mm={r['average']['mpjve']:.2f}")
cross = doc.get("cross_action") or {}
if cross:
  print(f"figure run=quick_ab routing=best_per_action mpjpe_mm={cross['best_average']:.1f}")
c = doc.get("classifier")
if c:
  summary = json.load(open(f"{scratch}/quick_ab/train_summary.json"))
  print(f"figure classifier sequence_accuracy={c['sequence_accuracy']:.3f} sequence_top3={c['sequence_top3']:.3f} "
        f"frame_accuracy={c['frame_accuracy']:.3f} frame_top3={c['frame_top3']:.3f} "
        f"train_time_s={summary.get('classifier', {}).get('train_time_s', c.get('train_time_s', 0)):.1f}")
PY
