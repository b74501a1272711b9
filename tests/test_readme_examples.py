"""The documentation's code runs as written, and its links lead somewhere.

The code blocks of docs/composing.md's "Three composed searches" section each run in a fresh
namespace with relative run directories under a temporary folder (their ``runs/...`` resolve
against the repository root otherwise) and must leave a searched population whose networks are of
the composed family. Every ``python`` block of README.md and docs/ must compile and import only
names that ``evoband`` exports. Every relative link of README.md, docs/*.md and benchmarks/*.md
must point at a file (and, with ``#anchor``, a heading) that exists.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from torch import nn

import evoband
import evoband.core._paths
from evoband.nets._family import BlockFamily
from helpers import REPO_ROOT

COMPOSING = REPO_ROOT / "docs" / "composing.md"
SECTION = "## Three composed searches"
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINKED = [*DOCS, REPO_ROOT / "benchmarks" / "README.md", REPO_ROOT / "benchmarks" / "HISTORY.md"]


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


def python_blocks(text: str) -> list[str]:
    """Every ```python block of a Markdown text."""
    return [m.group(1) for m in re.finditer(r"^```python\n(.*?)^```$", text, re.M | re.S)]


BLOCKS = section_code_blocks(COMPOSING.read_text())


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
def test_composed_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(evoband.core._paths, "repo_root", lambda: tmp_path)
    namespace: dict[str, object] = {"__name__": "readme_example"}
    exec(compile(BLOCKS[index], f"docs/composing.md (example {index + 1})", "exec"), namespace)
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


ALL_BLOCKS = [
    pytest.param(block, id=f"{doc.relative_to(REPO_ROOT)}#{i + 1}")
    for doc in DOCS
    for i, block in enumerate(python_blocks(doc.read_text()))
]


@pytest.mark.parametrize("block", ALL_BLOCKS)
def test_every_python_block_compiles_and_imports_public_names(block: str) -> None:
    tree = ast.parse(block)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("evoband"):
            assert node.module == "evoband", f"import from the top level, not {node.module}"
            for alias in node.names:
                assert alias.name in evoband.__all__, f"evoband does not export {alias.name}"


# -- links ---------------------------------------------------------------------------------------

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    text = re.sub(r"^```.*?^```$", "", markdown.read_text(), flags=re.M | re.S)
    return {github_anchor(m.group(1)) for m in re.finditer(r"^#+\s+(.*)$", text, re.M)}


def relative_links(markdown: Path) -> list[str]:
    text = re.sub(r"^```.*?^```$", "", markdown.read_text(), flags=re.M | re.S)
    return [
        target
        for target in LINK.findall(text)
        if not re.match(r"[a-z][a-z0-9+.-]*:", target)  # http:, https:, mailto: ...
    ]


def test_the_anchors_are_githubs() -> None:
    assert github_anchor("In Python: `fit()`") == "in-python-fit"
    assert github_anchor("On paper: 4 machines of 16 cores") == "on-paper-4-machines-of-16-cores"


@pytest.mark.parametrize("doc", LINKED, ids=lambda d: str(d.relative_to(REPO_ROOT)))
def test_every_relative_link_points_at_a_file_that_exists(doc: Path) -> None:
    links = relative_links(doc)
    broken = []
    for target in links:
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc
        if not path.exists():
            broken.append(target)
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(target)
    assert not broken, f"{doc.name}: broken links {broken}"


def test_the_readme_stays_a_users_page_of_at_most_250_lines() -> None:
    assert len((REPO_ROOT / "README.md").read_text().splitlines()) <= 250
