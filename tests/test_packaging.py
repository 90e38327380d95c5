"""The packaging files agree with pyproject.toml: the conda recipe's run requirements and version, the citation
and the changelog (so none of them can drift from the one source)."""
import re
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "packaging" / "conda" / "recipe.yaml"
# PyPI name -> conda-forge name, where they differ
CONDA_NAMES = {"torch": "pytorch", "opencv-python-headless": "py-opencv", "matplotlib": "matplotlib-base"}


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else pytest.importorskip("tomli")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirement(text: str) -> tuple[str, str, bool]:
    """``"torch>=2.4"`` -> ("torch", ">=2.4", False); the flag: a requirement for some machines only (marker)."""
    spec, _, marker = text.partition(";")
    name, version = re.fullmatch(r"\s*([A-Za-z0-9_.\-\[\]]+)\s*(.*?)\s*", spec).groups()
    return re.sub(r"\[.*\]", "", name).lower(), version.replace(" ", ""), bool(marker.strip())


def test_conda_recipe_runs_on_pyprojects_requirements_and_version():
    project, recipe = _project(), yaml.safe_load(RECIPE.read_text())
    assert recipe["context"]["version"] == project["version"]
    assert recipe["context"]["python_min"] == project["requires-python"].removeprefix(">=")
    assert recipe["build"]["noarch"] == "python"
    assert recipe["build"]["python"]["entry_points"] == [f"unetseg = {project['scripts']['unetseg']}"]
    wanted = {CONDA_NAMES.get(name, name): version for name, version, per_machine in map(_requirement,
              project["dependencies"]) if not per_machine}  # noarch: machine-specific engines stay optional
    run = dict(line.split(" ", 1) if " " in line else (line, "") for line in recipe["requirements"]["run"])
    assert run.pop("python") == ">=${{ python_min }}"
    assert run == wanted


def test_conda_recipe_tests_the_import_help_and_version():
    tests = yaml.safe_load(RECIPE.read_text())["tests"]
    assert {"unetseg"} <= set(next(t["python"]["imports"] for t in tests if "python" in t))
    assert {"unetseg --help", "unetseg --version"} <= set(next(t["script"] for t in tests if "script" in t))


def test_citation_is_cff_1_2_with_the_u_net_paper():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0" and {"message", "title", "authors"} <= set(cff)  # CFF's required keys
    assert str(cff["version"]) == _project()["version"]
    paper = cff["references"][0]
    assert paper["doi"] == "10.1007/978-3-319-24574-4_28" and paper["year"] == 2015
    assert [a["family-names"] for a in paper["authors"]] == ["Ronneberger", "Fischer", "Brox"]
    assert {"type", "title", "authors"} <= set(paper)  # a reference's required keys


def test_changelog_has_unreleased_and_the_current_version():
    headings = re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert headings[0] == "Unreleased" and _project()["version"] in headings
