"""The documentation runs: its examples are tests, so it cannot fall behind the code.

Every ``>>>`` example in README.md and docs/*.md is run with doctest (in a fresh temporary
working directory per page), the command-line blocks marked ``<!-- test_docs: run -->`` are
run through ``daskmeans.cli.main``, and every relative link points to a file that exists.
"""

from __future__ import annotations

import doctest
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

#: Pages whose examples are the point: each must keep at least one runnable example.
MUST_HAVE_EXAMPLES = {
    "README.md",
    "estimators.md",
    "inputs.md",
    "out-of-core.md",
    "family.md",
    "choosing-k.md",
    "cubes-and-tables.md",
}

FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.FAIL_FAST

#: A shell block that the suite runs follows this marker line.
RUN_MARKER = "<!-- test_docs: run -->"


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.fixture
def _close_figures():
    yield
    import sys

    if "matplotlib.pyplot" in sys.modules:
        sys.modules["matplotlib.pyplot"].close("all")


def test_pages_that_must_have_examples_exist():
    names = {p.name for p in PAGES}
    missing = MUST_HAVE_EXAMPLES - names
    assert not missing, f"documentation pages missing: {sorted(missing)}"


@pytest.mark.usefixtures("_close_figures")
@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_examples(page, tmp_path, monkeypatch):
    """Every ``>>>`` example of the page prints what the page says."""
    monkeypatch.chdir(tmp_path)
    text = page.read_text(encoding="utf-8")
    test = doctest.DocTestParser().get_doctest(
        text, {"__name__": "__docs__"}, page.name, str(page), 0
    )
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    result = runner.run(test, out=report.append)
    assert result.failed == 0, "".join(report)
    if page.name in MUST_HAVE_EXAMPLES:
        assert result.attempted > 0, f"{page.name} has no runnable example (>>> lines)"


def _marked_commands(text: str) -> list[list[str]]:
    """The ``daskmeans ...`` lines of every shell block that follows ``RUN_MARKER``."""
    commands = []
    for block in re.findall(re.escape(RUN_MARKER) + r"\s*```[a-z]*\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("daskmeans "):
                commands.append(shlex.split(line)[1:])
    return commands


MARKED = [p for p in PAGES if RUN_MARKER in p.read_text(encoding="utf-8")]


@pytest.mark.parametrize("page", MARKED, ids=_page_id)
def test_command_line_blocks(page, tmp_path, monkeypatch, capsys):
    """The marked command-line blocks run and exit 0, in order, in one directory."""
    from daskmeans.cli import main

    monkeypatch.chdir(tmp_path)
    commands = _marked_commands(page.read_text(encoding="utf-8"))
    assert commands, f"{page.name}: a {RUN_MARKER} marker without daskmeans commands after it"
    for argv in commands:
        status = main([*argv, "--quiet"])
        captured = capsys.readouterr()
        assert status == 0, f"daskmeans {shlex.join(argv)} exited {status}:\n{captured.err}"


def test_command_line_block_is_marked_in_readme_and_cli_page():
    assert {p.name for p in MARKED} >= {"README.md", "cli.md"}


_LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=_page_id)
def test_relative_links_resolve(page):
    """Links to other pages and files of the repository point to files that exist."""
    broken = []
    for target in _LINK.findall(page.read_text(encoding="utf-8")):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            broken.append(target)
    assert not broken, f"{page.name} links to missing files: {broken}"


def test_index_lists_every_page():
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    unlisted = [p.name for p in DOCS.glob("*.md") if p.name != "index.md"
                and f"]({p.name})" not in index]
    assert not unlisted, f"docs/index.md does not link to {unlisted}"
