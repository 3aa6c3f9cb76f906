"""The docs name only files that are in this repository.

A newcomer has only the clone: every Markdown link and every file path written in
backticks in README.md, CONTRIBUTING.md and docs/*.md must be a file or folder of the
repository, never one beside it (``../shared/...``). Paths in the docs are written from
the repository's root, from the document's folder, or inside the package
(``gateway/poller.py``, ``web/templates/``), so each is looked for in those places.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", REPO / "CONTRIBUTING.md", *(REPO / "docs").glob("*.md")])
# Where a path written without its full prefix may start.
BASES = (
    Path("."),
    Path("src"),
    Path("src/kenshin"),
    Path("src/kenshin/server"),
    Path("src/kenshin/server/web"),
)
# Made by a run, not kept in the repository (mosquitto_dir: the setting's folder).
GENERATED = ("build/", ".venv/", ".kenshin-demo/", "mosquitto_dir/")
LINK = re.compile(r"\]\(([^)\s]+)\)")
CODE = re.compile(r"`([^`\s]+)`")
EXTENSIONS = re.compile(
    r"\.(py|md|json|html|js|css|toml|lock|service|target|conf|env|yml|yaml|ini|mako|svg)$"
)
NOT_A_PATH = set("<>*{}+$:=?|")


def _is_path(text: str) -> bool:
    """Whether backticked text names a file or folder of ours (not a URL, a topic, a
    placeholder, a host path or a MIME type)."""
    if "/" not in text or text.startswith(("/", "~", "http")) or NOT_A_PATH & set(text):
        return False
    return text.endswith("/") or bool(EXTENSIONS.search(text)) or text.startswith("../")


def _exists(doc: Path, target: str) -> bool:
    target = target.split("#", 1)[0]
    if not target or target.startswith(GENERATED):
        return True
    # Up and out (``../``) only from the document's own folder.
    bases = [doc.parent] if ".." in Path(target).parts else [doc.parent, *(REPO / b for b in BASES)]
    for base in bases:
        found = (base / target).resolve()
        if found.is_relative_to(REPO) and found.exists():
            return True
    return False


def _references(doc: Path) -> list[str]:
    text = doc.read_text("utf-8")
    links = [t for t in LINK.findall(text) if not t.startswith(("http://", "https://", "#"))]
    return links + [t for t in CODE.findall(text) if _is_path(t)]


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_docs_name_only_files_of_the_repository(doc: Path) -> None:
    missing = [t for t in _references(doc) if not _exists(doc, t)]
    assert not missing, f"{doc.relative_to(REPO)} names what the repository lacks: {missing}"


def test_the_check_sees_a_missing_file_and_a_file_beside_the_repository() -> None:
    doc = REPO / "docs" / "architecture.md"
    assert _is_path("src/kenshin/server/schema.py") and _exists(doc, "../README.md")
    assert _is_path("../shared/DESIGN.md") and not _exists(doc, "../shared/DESIGN.md")
    assert not _exists(doc, "src/kenshin/server/no_such_room.py")
    assert not _exists(doc, "../../README.md")  # a file outside the repository, if any
    assert not _is_path("k/<gw>/d") and not _is_path("/api/v1/audit")
