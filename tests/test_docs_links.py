"""Every citation of the project's docs points to a file and a section that exist.

* A citation of ``PROTOCOLS.md``, ``ARCHITECTURE.md`` or ``PERFORMANCE.md`` in a ``.py``, ``.md``,
  ``.toml`` or ``.sh`` file names ``docs/NAME.md`` (inside ``docs/`` the bare name is a relative
  path), and the section it gives, ``§N`` / ``§N.M`` or ``#anchor``, is a heading of that file.
* Relative markdown links in ``README.md`` and ``docs/*.md`` resolve, their ``#anchor`` too.
* The repository paths the docs name in backquotes exist (the docs describe the house as it is).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("PROTOCOLS", "ARCHITECTURE", "PERFORMANCE")
SKIP_DIRS = {".git", ".venv", "venv", "build", "dist", "runs", "node_modules", "__pycache__", ".pytest_cache"}
SUFFIXES = {".py", ".md", ".toml", ".sh"}

# (optional folders)NAME.md, then optionally "#anchor" or " §N[.M]"
CITATION = re.compile(r"(?P<path>(?:[\w.-]+/)*(?P<name>" + "|".join(DOCS) + r")\.md)"
                      r"(?:(?P<anchor>#[\w-]+)|\s*§\s*(?P<section>\d+(?:\.\d+)*))?")
LINK = re.compile(r"\[[^\]\n]*\]\((?P<target>[^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(?P<text>.+?)\s*#*\s*$", re.M)
HTML_ANCHOR = re.compile(r"<a\s+(?:id|name)=\"(?P<id>[^\"]+)\"", re.I)
TOP_DIRS = ("saliency_bench/", "methods/", "datasets/", "packs/", "tests/", "perf/", "benchmarks/",
            "leaderboard/", "docs/")
PATH_IN_QUOTES = re.compile(r"`(?P<path>(?:" + "|".join(map(re.escape, TOP_DIRS)) + r")[^`\s]*)`")


def project_files() -> list[Path]:
    out = []
    for p in ROOT.rglob("*"):
        rel = p.relative_to(ROOT)
        if any(part in SKIP_DIRS or part.endswith(".egg-info") for part in rel.parts[:-1]):
            continue
        if p.is_file() and p.suffix in SUFFIXES and p != Path(__file__).resolve():
            out.append(p)
    return sorted(out)


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = md.read_text(encoding="utf-8")
    seen: dict[str, int] = {}
    out = {m["id"] for m in HTML_ANCHOR.finditer(text)}
    for m in HEADING.finditer(strip_code(text, inline=False)):
        s = slug(m["text"])
        n = seen.get(s, 0)
        out.add(s if n == 0 else f"{s}-{n}")
        seen[s] = n + 1
    return out


def sections(md: Path) -> set[str]:
    """The numbers headings start with: ``## 3. Weak localization`` -> ``3``, ``### 2.1 ...`` -> ``2.1``."""
    out = set()
    for m in HEADING.finditer(strip_code(md.read_text(encoding="utf-8"), inline=False)):
        num = re.match(r"§?(\d+(?:\.\d+)*)\.?(?:\s|$)", m["text"])
        if num:
            out.add(num[1])
    return out


def strip_code(text: str, inline: bool = True) -> str:
    """Fenced code blocks (and, with ``inline``, code spans) blanked out; every position kept."""
    def blank(m: re.Match) -> str:
        return re.sub(r"[^\n]", " ", m[0])
    text = re.sub(r"^```.*?^```", blank, text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", blank, text) if inline else text


def line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def test_slugs_and_sections_read_headings_as_github_does():
    assert slug("3. Weak localization and MaxBoxAccV2") == "3-weak-localization-and-maxboxaccv2"
    assert slug("5.4 `excitation_backprop` and `contrastive_excitation_backprop`") == \
        "54-excitation_backprop-and-contrastive_excitation_backprop"
    m = CITATION.search("see docs/PROTOCOLS.md §5.4, then")
    assert (m["path"], m["section"]) == ("docs/PROTOCOLS.md", "5.4")
    assert CITATION.search("(docs/ARCHITECTURE.md#flow)")["anchor"] == "#flow"


def test_every_citation_of_the_docs_names_a_file_and_section_that_exist():
    problems = []
    for f in project_files():
        text = f.read_text(encoding="utf-8", errors="replace")
        in_docs = f.parent == ROOT / "docs"
        for m in CITATION.finditer(text):
            where = f"{f.relative_to(ROOT)}:{line_of(text, m.start())}: {m[0]!r}"
            path, own = m["path"], f"docs/{m['name']}.md"
            if in_docs and "/" not in path:
                target = ROOT / "docs" / path
            elif path == own or (path.endswith("/" + own) and (f.parent / path).resolve() == ROOT / own):
                target = ROOT / "docs" / f"{m['name']}.md"
            else:
                problems.append(f"{where}: cite docs/{m['name']}.md, the project's own copy")
                continue
            if not target.is_file():
                problems.append(f"{where}: {target.relative_to(ROOT)} does not exist")
                continue
            if m["section"] and m["section"] not in sections(target):
                problems.append(f"{where}: {target.name} has no section {m['section']}")
            if m["anchor"] and m["anchor"][1:] not in anchors(target):
                problems.append(f"{where}: {target.name} has no anchor {m['anchor']}")
    assert not problems, "\n".join(problems)


def markdown_pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", markdown_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_of_the_readme_and_the_docs_resolve(page):
    assert page.is_file(), f"{page.relative_to(ROOT)} is missing"
    text = page.read_text(encoding="utf-8")
    problems = []
    for m in LINK.finditer(strip_code(text)):
        target = m["target"]
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            problems.append(f"line {line_of(text, m.start())}: {target} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            problems.append(f"line {line_of(text, m.start())}: {dest.name} has no anchor #{anchor}")
    assert not problems, f"{page.relative_to(ROOT)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", sorted((ROOT / "docs").glob("*.md")), ids=lambda p: p.name)
def test_the_repository_paths_the_docs_name_exist(page):
    text = page.read_text(encoding="utf-8")
    missing = []
    for m in PATH_IN_QUOTES.finditer(text):
        path = m["path"].rstrip(".,;:")
        if any(c in path for c in "*{}<>…") or "..." in path:
            continue  # a pattern or a placeholder, not one path
        path = path.split("::")[0]
        if not (ROOT / path).exists():
            missing.append(f"line {line_of(text, m.start())}: {path}")
    assert not missing, f"docs/{page.name} names paths that are not in the repository:\n" + "\n".join(missing)
