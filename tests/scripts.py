"""Loading the project's scripts (experiments/, benchmarks/) as modules in tests."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load(folder: str, name: str):
    """Imports ``ROOT/folder/name.py`` with its folder on ``sys.path``, as running it would."""
    directory = ROOT / folder
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    spec = importlib.util.spec_from_file_location(name, directory / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import does (dataclasses look their module up there)
    spec.loader.exec_module(module)
    return module
