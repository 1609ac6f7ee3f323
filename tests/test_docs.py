"""The documentation's maps match the house: the README stays a short front page, every relative link in it and in
docs/*.md reaches a file (and a heading, when it names one), the README links every docs file, and
docs/architecture.md names every module there is."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_MAX_LINES = 380

_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def _prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans (links there are examples, not links)."""
    out, fence = [], False
    for line in text.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
            out.append("")
            continue
        out.append("" if fence else _CODE_SPAN.sub("", line))
    return "\n".join(out)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (word characters, '-' and spaces kept), each
    space a hyphen."""
    text = _LINK.sub(lambda m: m.group(0)[1:m.group(0).index("]")], heading)  # a link in a heading: its text
    text = text.strip().lower().replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a markdown file, with GitHub's -1, -2 suffixes for repeated headings."""
    seen: dict[str, int] = {}
    out = set()
    fence = False
    for line in path.read_text(encoding="utf-8").split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
            continue
        m = None if fence else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = _slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(path: Path) -> list[str]:
    return [t for t in _LINK.findall(_prose(path.read_text(encoding="utf-8")))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]  # http:, https:, mailto: are not files


def broken_links(path: Path) -> list[str]:
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    problems = []
    for target in relative_links(path):
        file_part, _, fragment = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{name}: {target}: no such file")
        elif fragment and dest.suffix == ".md" and unquote(fragment) not in anchors(dest):
            problems.append(f"{name}: {target}: no such heading in {dest.name}")
    return problems


def test_docs_exist():
    assert DOCS, "docs/*.md is missing"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    assert broken_links(path) == []


def test_readme_is_a_front_page():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/"


def test_readme_links_every_docs_file():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in relative_links(README)}
    assert [p.name for p in DOCS if p.resolve() not in linked] == []


def test_architecture_names_every_module():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    modules = sorted(str(p.relative_to(ROOT)) for pkg in ("app", "retrieval", "tuning", "benchmarks")
                     for p in (ROOT / pkg).rglob("*.py") if "__pycache__" not in p.parts)
    assert modules, "no modules found"
    assert [m for m in modules if f"`{m}`" not in text] == []


def test_the_checker_catches_what_it_should(tmp_path):
    (tmp_path / "a.md").write_text("# Top\n\n## Some `code`, here (2026)\n", encoding="utf-8")
    page = tmp_path / "b.md"
    page.write_text("[ok](a.md) [ok](a.md#some-code-here-2026) [gone](missing.md) [bad anchor](a.md#nope)\n"
                    "[web](https://example.com) `[not a link](nowhere.md)`\n```\n[example](nowhere.md)\n```\n",
                    encoding="utf-8")
    problems = broken_links(page)
    assert len(problems) == 2
    assert "missing.md: no such file" in problems[0] and "no such heading" in problems[1]
