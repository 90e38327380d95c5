"""Every code block of every documentation page runs (or, for commands on the reader's own data, is checked
against the real parser): see ``blocks.py`` for what each fence language means."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from unetseg.cli import build_parser
from unetseg.config import validate_config
from unetseg.outputs import kinds as kinds_module

from .blocks import DOCS, LANGUAGES, blocks, commands, pages

REPO = DOCS.parent


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(DOCS)))
def test_page_code_runs(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(kinds_module, "_KINDS", dict(kinds_module._registry()))  # a page's new kind stays its own
    namespace: dict[str, object] = {"__name__": f"docs_page_{page.stem}"}
    for block in blocks(page):
        assert block.language in LANGUAGES, f"{block.where}: fence language {block.language!r}"
        if block.language == "python":
            exec(compile(block.code, block.where, "exec"), namespace)  # noqa: S102  the page's own example
        elif block.language == "sh":
            run_shell(block.code, block.where, tmp_path)
        elif block.language == "bash":
            check_commands(block.code, block.where)
        else:
            check_yaml(block.code, block.where)


def run_shell(code: str, where: str, folder: Path) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for words in commands(code):
        done = subprocess.run(words, cwd=folder, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"{where}: {' '.join(words)} exited {done.returncode}:\n{done.stderr[-3000:]}"


def check_commands(code: str, where: str) -> None:
    parser = build_parser()
    for words in commands(code):
        if words[0] == "torchrun":  # torchrun [its options] -m unetseg.cli ...
            words = ["unetseg", *words[words.index("unetseg.cli") + 1:]]
        if words[0] == "unetseg":
            try:
                parser.parse_args(words[1:])
            except SystemExit as err:
                pytest.fail(f"{where}: {' '.join(words)}: rejected by unetseg's parser ({err.code})")
        elif words[0] == "python":
            assert (REPO / words[1]).is_file(), f"{where}: no script {words[1]}"
        else:
            assert words[0] in ("pytest", "pip", "cp", "bash"), f"{where}: unchecked command {words[0]}"
            if words[0] == "bash":
                assert (REPO / words[1]).is_file(), f"{where}: no script {words[1]}"


def check_yaml(code: str, where: str) -> None:
    data = yaml.safe_load(code)
    assert isinstance(data, dict), f"{where}: not a mapping"
    data.setdefault("data", {"source": "sample", "sample": "nuclei"})
    data["data"].setdefault("source", "sample")
    if data["data"]["source"] == "sample":
        data["data"].setdefault("sample", "nuclei")
    data.setdefault("train", {}).setdefault("epochs", 1)
    validate_config(data, source=where)
