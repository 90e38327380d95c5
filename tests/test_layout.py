"""The package layout is the data flow: inference knows no output files, training reaches inference only through
predict_tiled and export only through the deployable graph (openvino_model, calibration_tiles_from), and nothing
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


def test_importing_inference_loads_neither_the_outputs_layer_nor_the_commands():
    code = "import sys, unetseg.inference; print(sorted(m for m in sys.modules if m.split('.')[:2] in " \
           "(['unetseg', 'outputs'], ['unetseg', 'commands'])))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_inference_names_no_output_files():
    assert not {"files.py", "dask_files.py", "shard.py"} & {p.name for p in (PACKAGE / "inference").iterdir()}
    for module, names in imports_of("inference").items():
        assert not any(n.startswith(("unetseg.outputs", "unetseg.commands")) for n in names), module


def test_export_reaches_inference_only_for_the_deployable_graph_and_training_only_predict_tiled_and_its_cost():
    for module, names in imports_of("export").items():
        reached = {n for n in names if n.startswith("unetseg.inference")}
        assert reached <= {"unetseg.inference:openvino_model", "unetseg.inference:calibration_tiles_from"}, \
            (module, reached)
    for module, names in imports_of("training").items():
        reached = {n for n in names if n.startswith("unetseg.inference")}
        assert reached <= {"unetseg.inference:predict_tiled", "unetseg.inference:input_pixels"}, (module, reached)


def test_nothing_but_the_cli_imports_the_commands():
    for folder in ("models", "io", "data", "inference", "outputs", "training", "export", "config"):
        for module, names in imports_of(folder).items():
            assert not any(n.startswith("unetseg.commands") for n in names), module
