"""The package layout is the data flow: engines <- tiling <- objects <- scale <- outputs, each importing only
downstream; the tiler knows no output files, training reaches it only through predict_tiled and its cost, and nothing
imports the commands."""
import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "unetseg"


def imports_of(folder: str) -> dict[str, set[str]]:
    """module path -> every unetseg module it imports (from-imports resolved to absolute names), with the names."""
    found: dict[str, set[str]] = {}
    for path in (PACKAGE / folder).rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = list(package[: len(package) - node.level + 1]) if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                names |= {f"{module}:{a.name}" for a in node.names}
            elif isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
        found[str(path.relative_to(PACKAGE))] = names
    return found


# package -> the unetseg packages it must not import (the data flow runs engines <- tiling <- objects <- scale <- outputs)
FORBIDDEN = {
    "engines": ("tiling", "objects", "scale", "outputs", "export", "training", "commands", "napari"),
    "tiling": ("objects", "scale", "outputs", "export", "training", "commands", "napari"),
    "objects": ("scale", "outputs", "export", "training", "commands", "napari"),
    "scale": ("outputs", "export", "training", "commands", "napari"),
}


def test_the_tiler_engines_objects_and_scale_import_only_downstream():
    for folder, banned in FORBIDDEN.items():
        for module, names in imports_of(folder).items():
            reached = {n for n in names if n.startswith(tuple(f"unetseg.{b}" for b in banned))}
            assert not reached, (module, reached)


def test_importing_the_tiler_loads_neither_the_outputs_layer_nor_the_commands():
    code = "import sys, unetseg.tiling, unetseg.scale; print(sorted(m for m in sys.modules if m.split('.')[:2] in " \
           "(['unetseg', 'outputs'], ['unetseg', 'commands'])))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
    # nor does planning and training a U-Net load smp (its encoders and torchvision: seconds of every start)
    code = "import sys, unetseg.cli, unetseg.training.plan, unetseg.losses; " \
           "print('segmentation_models_pytorch' in sys.modules, 'unetseg.training.trainer' in sys.modules)"
    # and `unetseg plan` does not load the trainer
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout == "False False\n"


def test_the_tiler_names_no_output_files():
    for folder in ("tiling", "scale"):
        assert not {"files.py", "dask_files.py", "shard.py"} & {p.name for p in (PACKAGE / folder).iterdir()}


def test_training_reaches_the_tiler_only_through_predict_tiled_and_its_cost():
    for module, names in imports_of("training").items():
        reached = {n for n in names if n.startswith(("unetseg.tiling", "unetseg.engines", "unetseg.scale"))}
        allowed = {"unetseg.tiling:predict_tiled", "unetseg.tiling:input_pixels", "unetseg.tiling:volume_input_voxels"}
        assert reached <= allowed, (module, reached)


def test_the_old_inference_package_is_only_a_deprecated_alias():
    import warnings

    import unetseg.inference as old
    import unetseg.tiling
    assert sorted(p.name for p in (PACKAGE / "inference").glob("*.py")) == ["__init__.py"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert old.predict_tiled is unetseg.tiling.predict_tiled
    assert caught and "unetseg.tiling.predict_tiled" in str(caught[0].message)


def test_nothing_but_the_cli_imports_the_commands():
    for folder in ("models", "io", "data", "tiling", "engines", "objects", "scale", "outputs", "training", "export",
                   "config"):
        for module, names in imports_of(folder).items():
            assert not any(n.startswith("unetseg.commands") for n in names), module
