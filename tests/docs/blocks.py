"""The code blocks of the documentation pages (MyST Markdown under ``docs/``), read with markdown-it as MyST does.

What each fence language means to the tests (``test_pages.py``):

- ``python``: executed, in order, in one namespace per page, in a fresh folder per page;
- ``sh``: executed by bash in the same folder, each line a command (``uv run`` dropped: the tests run inside the
  environment it would set up); for commands cheap enough for CI on the built-in samples;
- ``bash``: commands on the reader's own data, cluster or GPU: every ``unetseg`` command is parsed by the real
  parser (each subcommand, option and value must exist and convert), every script named must exist;
- ``yaml``: loaded, and validated as a run config (with the nuclei sample as data when none is given).

Any other language fails the tests, so no block escapes them.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from markdown_it import MarkdownIt

DOCS = Path(__file__).resolve().parents[2] / "docs"
LANGUAGES = ("python", "sh", "bash", "yaml")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(DOCS)}:{self.line}"


def pages() -> list[Path]:
    """Every hand-written Markdown page (the generated API pages are reST)."""
    return sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)


def blocks(page: Path) -> list[Block]:
    tokens = MarkdownIt("commonmark").parse(page.read_text(encoding="utf-8"))
    found = []
    for token in tokens:
        if token.type != "fence" or token.info.startswith("{"):  # {directive} fences are not code
            continue
        language = token.info.split()[0] if token.info.strip() else ""
        found.append(Block(page, token.map[0] + 1 if token.map else 0, language, token.content))
    return found


def commands(code: str) -> list[list[str]]:
    """Shell lines as argument lists: continuation lines joined, comments and ``uv run`` dropped."""
    out = []
    for line in code.replace("\\\n", " ").splitlines():
        words = shlex.split(line, comments=True)
        if words[:2] == ["uv", "run"]:
            words = words[2:]
            while words and words[0].startswith("--"):  # uv's own options (--extra bench, --group docs)
                words = words[2:] if words[0] in ("--extra", "--group", "--with") else words[1:]
        if words:
            out.append(words)
    return out
