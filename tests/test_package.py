"""The public face of cnnjax: the names the lecture's users import, and lazy submodules."""

import importlib
import inspect
import pathlib
import subprocess
import sys

import pytest

import cnnjax


def test_public_names():
    functions = ["conv", "maxpool", "relu", "dense", "flatten", "softmax", "sparse_categorical_crossentropy",
                 "categorical_crossentropy", "accuracy", "summary", "print_summary", "local_response_norm"]
    modules = ["nn", "models", "weights", "data", "train", "lowering", "lecture", "transforms", "losses", "viz"]
    for name in functions + modules:
        assert name in cnnjax.__all__, name
    for name in functions:
        assert inspect.isfunction(getattr(cnnjax, name)), name
    for name in modules:
        assert getattr(cnnjax, name) is importlib.import_module(f"cnnjax.{name}"), name
    assert cnnjax.__version__ == "0.1.0"


@pytest.mark.parametrize("package", [cnnjax, cnnjax.train, cnnjax.data])
def test_no_module_name_is_rebound_to_a_function(package):
    """``cnnjax.conv`` is the function and nothing else: no public name of a package is both
    one of its modules and something else (implementation modules are private)."""
    files = {f.stem for f in pathlib.Path(package.__file__).parent.glob("*.py")}
    files |= {d.name for d in pathlib.Path(package.__file__).parent.iterdir() if (d / "__init__.py").exists()}
    for name in package.__all__:
        if name in files:
            assert inspect.ismodule(getattr(package, name)), f"{package.__name__}.{name}"
    assert {"conv", "summary"} <= set(cnnjax.__all__) and "fit" in cnnjax.train.__all__  # the names that were


@pytest.mark.slow
def test_orbax_and_matplotlib_load_only_when_used():
    code = ("import sys, tempfile, cnnjax; print('orbax.checkpoint' in sys.modules, 'matplotlib' in sys.modules); "
            "cnnjax.viz; cnnjax.train.checkpoints.Checkpointer(tempfile.mkdtemp()); "
            "print('orbax.checkpoint' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "True", "True"]


def test_unknown_attribute():
    with pytest.raises(AttributeError, match="module 'cnnjax' has no attribute 'convolve'"):
        _ = cnnjax.convolve


def _import_graph():
    """``{module: modules of cnnjax it imports}``, read from the source (imports inside
    functions included)."""
    import ast

    root = pathlib.Path(cnnjax.__file__).parent
    graph = {}
    for f in sorted(root.rglob("*.py")):
        parts = ("cnnjax", *f.relative_to(root).with_suffix("").parts)
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = module.split(".") if f.name == "__init__.py" else module.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                deps |= {f"{base}.{a.name}" for a in node.names} if node.module is None else {base}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cnnjax"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("cnnjax")}
        graph[module] = {d for d in deps if d != module}
    return graph


LAYERS = [  # docs/architecture.md: a module imports only from its own layer or those below
    ("lowering", ["cnnjax._checks", "cnnjax._memory", "cnnjax._compile_cache", "cnnjax._modes", "cnnjax.lowering"]),
    ("operations", ["cnnjax._conv", "cnnjax._pool", "cnnjax._dense", "cnnjax._activations", "cnnjax._normalization",
                    "cnnjax.losses", "cnnjax.lecture", "cnnjax.synthetic", "cnnjax.transforms", "cnnjax.audio",
                    "cnnjax.text", "cnnjax.data"]),
    ("nn", ["cnnjax.nn", "cnnjax._capture"]),
    ("models", ["cnnjax.models", "cnnjax.weights", "cnnjax._summary", "cnnjax.viz"]),
    ("train", ["cnnjax.train"]),
    ("package", ["cnnjax"]),
]


def _layer(module):
    best = max((p for _, prefixes in LAYERS for p in prefixes if module == p or module.startswith(p + ".")), key=len)
    return next(i for i, (_, prefixes) in enumerate(LAYERS) if best in prefixes)


TOWERS = {  # docs/architecture.md: two towers that meet only in the experiments (and the package's __init__)
    "models": ["cnnjax.models", "cnnjax.weights", "cnnjax._summary", "cnnjax.viz", "cnnjax.nn", "cnnjax._capture"],
    "train": ["cnnjax.train"],
}


def _tower(module):
    return next((name for name, prefixes in TOWERS.items()
                 if any(module == p or module.startswith(p + ".") for p in prefixes)), None)


def test_training_and_the_networks_are_two_towers_that_never_import_each_other():
    """train/ runs any flax.nnx model: it imports no layer and no network of cnnjax's, and no
    layer or network imports train/ (the experiments put the two together)."""
    graph = _import_graph()
    assert any(_tower(m) == "train" for m in graph) and any(_tower(m) == "models" for m in graph)
    crossing = [f"{module} -> {dep}" for module, deps in graph.items() for dep in deps
                if _tower(module) and _tower(dep) and _tower(module) != _tower(dep)]
    assert crossing == []


def test_the_arrows_point_one_way_and_nothing_imports_in_a_cycle():
    graph = _import_graph()
    assert len(graph) > 40 and "cnnjax.data._idx" in graph and "cnnjax.train.checkpoints" in graph
    for module, deps in graph.items():
        for dep in deps:
            assert _layer(dep) <= _layer(module), f"{module} ({LAYERS[_layer(module)][0]}) imports {dep} " \
                                                  f"({LAYERS[_layer(dep)][0]})"
    state = {}

    def visit(module, path):  # depth-first: a module met again on the current path closes a cycle
        state[module] = "open"
        for dep in sorted(graph.get(module, ())):
            if dep not in graph:
                dep = dep.rsplit(".", 1)[0]  # `from . import name` of a function, not a module
            assert state.get(dep) != "open", "import cycle: " + " -> ".join([*path, module, dep])
            if dep not in state:
                visit(dep, [*path, module])
        state[module] = "done"

    for module in graph:
        if module not in state:
            visit(module, [])
