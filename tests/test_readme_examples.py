"""The code blocks of the README's "Compose your own search" section run as written.

Each block runs in a fresh namespace with relative run directories under a temporary folder (the
README's ``runs/...`` resolve against the repository root otherwise) and must leave a searched
population whose networks are of the composed family.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from torch import nn

import evoband.core._paths
from evoband.nets._family import BlockFamily
from helpers import REPO_ROOT

SECTION = "### Compose your own search"


def section_code_blocks(text: str, heading: str = SECTION) -> list[str]:
    """The ```python blocks between ``heading`` and the next heading (outside code)."""
    lines = text.splitlines()
    start = lines.index(heading) + 1
    blocks: list[str] = []
    current: list[str] | None = None
    for line in lines[start:]:
        if current is None and line.startswith("#"):
            break  # the next heading
        if current is None and line.strip() == "```python":
            current = []
        elif current is not None and line.strip() == "```":
            blocks.append("\n".join(current) + "\n")
            current = None
        elif current is not None:
            current.append(line)
    return blocks


BLOCKS = section_code_blocks((REPO_ROOT / "README.md").read_text())


def test_the_section_has_a_dense_a_conv_and_a_residual_fork_example() -> None:
    assert len(BLOCKS) == 3
    dense, conv, residual = BLOCKS
    assert "Dense(" in dense and "Conv(" not in dense
    assert "Conv(" in conv and "Pool(" in conv
    assert "Residual(" in residual and "Fork(" in residual and "Shield(" in residual


def test_the_extraction_stops_at_the_next_heading() -> None:
    text = "### A\n```python\nx = 1\n# not a heading\n```\n### B\n```python\ny = 2\n```\n"
    assert section_code_blocks(text, "### A") == ["x = 1\n# not a heading\n"]


@pytest.mark.parametrize("index", range(3), ids=["dense", "conv", "residual_fork"])
def test_readme_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evoband.core._paths, "repo_root", lambda: tmp_path)
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(BLOCKS[index], f"README.md (example {index + 1})", "exec"), namespace)
    population = namespace["population"]
    assert population.report.n_evaluations == 6  # type: ignore[attr-defined]
    best = population[0]  # type: ignore[index]
    assert isinstance(best.family, BlockFamily)
    assert best.result is not None and best.num_params <= 100_000
    assert any((tmp_path / "runs").glob("readme-*/run.json"))
    if index > 0:  # the examples that call model()
        model = best.model()
        assert isinstance(model, nn.Module)
        assert sum(p.numel() for p in model.parameters()) == best.num_params
