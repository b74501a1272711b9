#!/usr/bin/env bash
# Install evoband's dependencies: the CPU build of torch first, then the rest and the dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check torch==2.13.0
python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
python -m pip install --quiet --disable-pip-version-check --no-deps -e .
# the optional extra evoband[dashboard] (optuna, optuna-dashboard) for evaluation.py --dashboard
python -m pip install --quiet --disable-pip-version-check -e ".[dashboard]"
