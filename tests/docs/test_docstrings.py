"""Every ``Examples:`` section in the docstring of a public name (each name in ``__all__`` of ``unetseg`` and its
subpackages, and the public members of the classes among them) runs as a doctest."""
from __future__ import annotations

import doctest
import inspect
import sys

import pytest

from .blocks import DOCS

sys.path.insert(0, str(DOCS / "_ext"))
from apiref import exported_packages  # noqa: E402


def public_docstring_tests() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(recurse=False)
    seen: set[int] = set()
    tests = []
    for package, names in exported_packages().items():
        module = sys.modules[package]
        for name in names:
            obj = getattr(module, name)
            members = [(name, obj)]
            if inspect.isclass(obj):
                members += [(f"{name}.{m}", v) for m, v in vars(obj).items() if not m.startswith("_")]
            for label, member in members:
                if id(member) in seen or not isinstance(getattr(member, "__doc__", None), str):
                    continue
                seen.add(id(member))
                tests += [t for t in finder.find(member, f"{package}.{label}", module=False, globs={})
                          if t.examples]
    return tests


TESTS = public_docstring_tests()


def test_the_main_entry_points_have_examples() -> None:
    names = {t.name for t in TESTS}
    for required in ("unetseg.UNet", "unetseg.ConvAutoencoder", "unetseg.build_model", "unetseg.save_checkpoint",
                     "unetseg.load_model", "unetseg.predict_tiled"):
        assert required in names, f"{required}: no Examples section"


@pytest.mark.parametrize("test", TESTS, ids=lambda t: t.name)
def test_docstring_examples_run(test: doctest.DocTest, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=lambda text: sys.stdout.write(text))
    assert runner.failures == 0, f"{test.name}: {runner.failures} example(s) failed (output above)"
