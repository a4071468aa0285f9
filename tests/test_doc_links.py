"""Every relative link in README.md, CONTRIBUTING.md and docs/**/*.md points at a file that exists, and every
#anchor into a markdown page names one of its headings: pages move (docs/experiments/), links must follow."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE = re.compile(r"`[^`\n]*`")


def pages() -> list[Path]:
    return [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").rglob("*.md"))]


def links(page: Path) -> list[str]:
    text = CODE.sub("", FENCE.sub("", page.read_text()))
    return LINK.findall(text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = FENCE.sub("", page.read_text())
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def test_slug_follows_github():
    assert slug("Ten thousand steps, and the readout: what KL leaves free") == (
        "ten-thousand-steps-and-the-readout-what-kl-leaves-free"
    )
    assert slug("`kd plan MANIFEST -t TEACHER`") == "kd-plan-manifest--t-teacher"
    assert slug("Teacher costs (`teacher_costs`, `plan_check`)") == "teacher-costs-teacher_costs-plan_check"


def test_relative_links_point_at_existing_files_and_headings():
    broken = []
    for page in pages():
        for target in links(page):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            name = resolved.relative_to(REPO).as_posix() if resolved.is_relative_to(REPO) else str(resolved)
            where = f"{page.relative_to(REPO)}: ({target})"
            if not resolved.exists():
                broken.append(f"{where} -> {name} does not exist")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{where} -> no heading #{anchor} in {name}")
    assert not broken, "broken links:\n" + "\n".join(broken)
