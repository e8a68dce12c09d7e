"""The design document (docs/design.md) and the links to it.

The README and the docstrings point to sections of docs/design.md
(``docs/design.md#data-conventions``). These tests fail when a file still refers to the
old design page that lived outside the repository, when a link names a section that
docs/design.md does not have (GitHub's anchor rules: lowercase, spaces to ``-``,
punctuation dropped), or when the README stops linking the design from its top part.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DESIGN = ROOT / "docs" / "design.md"
OLD_NAME = "DESIGN" + ".md"       # spelled in two parts so that this file does not mention it
LINK = re.compile(r"design\.md#([A-Za-z0-9_-]+)")
LOCAL_LINK = re.compile(r"\]\(#([A-Za-z0-9_-]+)\)")
SKIP_DIRS = {".git", ".venv", "runs", "__pycache__", ".pytest_cache"}


def tracked_files() -> list[Path]:
    """The repository's tracked files (every file outside .venv, .git and runs/ without git)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
        files = [ROOT / p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in ROOT.rglob("*") if p.is_file()
                 and not SKIP_DIRS.intersection(p.relative_to(ROOT).parts)]
    return [p for p in files if p.is_file() and ".venv" not in p.relative_to(ROOT).parts]


def text_files() -> dict[Path, str]:
    out = {}
    for p in tracked_files():
        data = p.read_bytes()
        if b"\0" in data:
            continue                                    # binary (images, checkpoints)
        out[p] = data.decode("utf-8", "replace")
    return out


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lowercase, punctuation dropped, spaces to '-'."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)               # keeps letters, digits, '_', '-', ' '
    return text.replace(" ", "-")


def design_anchors() -> set[str]:
    """The anchors of every heading of docs/design.md (outside code blocks; duplicates get -1, -2...)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in DESIGN.read_text().splitlines():
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_code or not m:
            continue
        base = github_anchor(m.group(1))
        n = seen.get(base, 0)
        seen[base] = n + 1
        anchors.add(base if n == 0 else f"{base}-{n}")
    return anchors


def test_github_anchor_rules():
    assert github_anchor("Data conventions") == "data-conventions"
    assert github_anchor("V-trace") == "v-trace"
    assert github_anchor("ProcGen easy, 6 games") == "procgen-easy-6-games"
    assert github_anchor("SRWM without carry-over") == "srwm-without-carry-over"
    assert github_anchor("The `srwm` core: x = W^y (q)") == "the-srwm-core-x--wy-q"


def test_no_file_refers_to_the_old_design_page():
    offenders = [f"{p.relative_to(ROOT)}:{i}" for p, text in text_files().items()
                 for i, line in enumerate(text.splitlines(), 1) if OLD_NAME in line]
    assert not offenders, (f"{OLD_NAME} is not part of the repository; point to a section of "
                           f"docs/design.md instead: {', '.join(offenders)}")


def test_design_has_the_sections_the_project_relies_on():
    anchors = design_anchors()
    for section in ("data-flow", "data-conventions", "the-agent", "core-contract", "core-equations",
                    "kernels", "v-trace", "losses", "optimiser", "reference-configurations",
                    "measured-costs", "dependencies"):
        assert section in anchors, f"docs/design.md has no section #{section}"


def test_every_link_to_a_design_section_resolves():
    anchors = design_anchors()
    links = [(p, i, m.group(1)) for p, text in text_files().items()
             for i, line in enumerate(text.splitlines(), 1) for m in LINK.finditer(line)]
    links += [(DESIGN, i, m.group(1)) for i, line in enumerate(DESIGN.read_text().splitlines(), 1)
              for m in LOCAL_LINK.finditer(line)]
    assert len(links) >= 50, f"expected the code and docs to link docs/design.md sections, found {len(links)}"
    broken = [f"{p.relative_to(ROOT)}:{i} #{a}" for p, i, a in links if a not in anchors]
    assert not broken, "links to sections docs/design.md does not have: " + ", ".join(broken)


def test_readme_links_the_design_from_its_top_part():
    readme = (ROOT / "README.md").read_text()
    top = readme.split("\n## ", 1)[0]                  # everything before the first section
    assert "(docs/design.md)" in top, "README.md should link docs/design.md before its first section"


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__, "-q"]))
