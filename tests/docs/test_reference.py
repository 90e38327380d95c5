"""The site builds with warnings as errors, and its generated references are complete: every name in every
``__all__`` has an entry, the CLI page every option of every subcommand, the config page every field.

The site is built once per session into a temporary folder, or read from ``UNETSEG_DOCS_HTML`` when ``.ci/run``
has just built it with the same command."""
from __future__ import annotations

import argparse
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .blocks import DOCS

sys.path.insert(0, str(DOCS / "_ext"))
from apiref import canonical_names, exported_packages  # noqa: E402
from configref import sections  # noqa: E402

from unetseg.cli import build_parser  # noqa: E402
from unetseg.config import RunConfig  # noqa: E402


@pytest.fixture(scope="session")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("UNETSEG_DOCS_HTML"):
        return Path(os.environ["UNETSEG_DOCS_HTML"])
    out = tmp_path_factory.mktemp("html")
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", str(DOCS),
                           str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-5000:]
    return out


def text(page: Path) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page.read_text(encoding="utf-8")))


def test_every_exported_name_has_an_entry(site: Path) -> None:
    packages = exported_packages()
    canonical = canonical_names(packages)
    ids = "".join(p.read_text(encoding="utf-8") for p in (site / "reference" / "api").glob("*.html"))
    for package, names in packages.items():
        page = (site / "reference" / "api" / f"{package}.html").read_text(encoding="utf-8")
        for name in names:
            module = sys.modules[package]
            target = canonical[id(getattr(module, name))]
            assert f'id="{target}"' in ids, f"{package}.{name}: no description ({target})"
            assert f'href="#{target}"' in page or f'#{target}"' in page, f"{package}.{name}: not on {package}'s page"


def test_cli_page_lists_every_option_of_every_subcommand(site: Path) -> None:
    page = text(site / "reference" / "cli.html")
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert subparsers.choices
    starts = [page.find(f"unetseg {command} [-h]") for command in subparsers.choices]
    assert -1 not in starts and starts == sorted(starts), "a subcommand's section is missing"
    for (command, sub), start, end in zip(subparsers.choices.items(), starts, [*starts[1:], len(page)], strict=True):
        section = page[start:end].split("\n", 1)[1]  # past the usage line, which names every option too
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings or [action.dest]:
                assert option in section, f"unetseg {command} {option}: not on the CLI page"


def test_config_page_lists_every_field(site: Path) -> None:
    page = text(site / "reference" / "config.html")
    found = sections(RunConfig)
    assert len(found) > 5
    for key, model in found:
        for name in model.model_fields:
            dotted = f"{key}.{name}" if key else name
            assert dotted in page, f"{dotted}: not on the config page"
