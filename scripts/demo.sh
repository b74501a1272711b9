#!/usr/bin/env bash
# The main job: a short real search (2 minutes, its final predictor made inside them), then that
# predictor scored on the test split from its saved weights. Usage: bash scripts/demo.sh [SEED [DATA_DIR]]
set -euo pipefail
cd "$(dirname "$0")/.."
seed="${1:-123}"
run="runs/demo_seed${seed}_$(date +%Y-%m-%d_%H-%M-%S)"
data=()
if [ -n "${2:-}" ]; then
  data=(--data_dir "$2")
elif ! python -c "import sys; sys.path.insert(0, 'src'); from evoband.training import find_data_dir; find_data_dir()" 2>/dev/null; then
  echo "micro17flower images not found: running the demo on scikit-learn's bundled digits instead." >&2
  data=(--data_dir digits)
fi
status=0
python src/AutoML.py --pop_size 6 --hyperband True --max_time 120 --seed "$seed" --run_dir "$run" "${data[@]}" || status=$?
[ "$status" -le 1 ] || exit "$status"
if [ -f "$run/ensemble.json" ]; then
  python src/main.py -c "$run/ensemble.json" -t True "${data[@]}" || true
else
  python src/main.py -c "$run/opt_cfg.json" -t True --seed "$seed" "${data[@]}" || true
fi
