"""Random search baseline: the same flags, target and outputs as AutoML.py, children drawn at random.

python src/AutoML_random_search.py --pop_size 6 --max_time 120
"""

from __future__ import annotations

from AutoML import main as automl_main
from evoband.cli import run_cli


def main(argv: list[str] | None = None) -> int:
    return automl_main(argv, random_search=True)


if __name__ == "__main__":
    run_cli(main)
