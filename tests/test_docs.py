"""The README a newcomer reads, and the docs it links to, stay short and inside the repo."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "RELIABILITY.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_the_readme_is_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_the_readme_links_only_inside_the_repository() -> None:
    for target in LINK.findall((ROOT / "README.md").read_text()):
        assert not target.startswith(("http://", "https://", "//")), target


def test_every_relative_link_stays_in_the_repository_and_exists() -> None:
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://")):
                continue  # a specification or a package page, from docs/
            path = target.split("#", 1)[0]
            if path:
                resolved = (page.parent / path).resolve()
                assert resolved.is_relative_to(ROOT), (page.name, target)
                assert resolved.exists(), (page.name, target)


def test_no_tool_the_quick_start_does_not_install() -> None:
    # redis-cli is not shipped: the docs use `fanout tail` and `fanout stats`.
    for page in PAGES:
        assert "redis-cli" not in page.read_text(), page.name
