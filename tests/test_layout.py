"""The architecture as the imports show it: scripts -> models -> toolkit, never upward."""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = {name[:-3] for name in os.listdir(ROOT) if name.endswith(".py")}


def imported_modules(path: str) -> set[str]:
    """Every module a file imports, at the top or inside a function (a lazy import runs upward all the same)."""
    found = set()
    for node in ast.walk(ast.parse(open(path).read(), path)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def package_files(package: str) -> list[str]:
    return [os.path.join(root, name) for root, _, names in os.walk(os.path.join(ROOT, package))
            for name in names if name.endswith(".py")]


def test_toolkit_imports_neither_models_nor_scripts():
    upward = {(os.path.relpath(path, ROOT), module) for path in package_files("toolkit")
              for module in imported_modules(path) if module.split(".")[0] in SCRIPTS | {"models"}}
    assert upward == set()


def test_models_import_no_script():
    upward = {(os.path.relpath(path, ROOT), module) for path in package_files("models")
              for module in imported_modules(path) if module.split(".")[0] in SCRIPTS}
    assert upward == set()


def test_toolkit_has_no_relative_imports():
    """Absolute imports only: a module's dependencies read the same wherever it sits in the tree."""
    relative = [os.path.relpath(path, ROOT) for path in package_files("toolkit")
                for node in ast.walk(ast.parse(open(path).read())) if isinstance(node, ast.ImportFrom) and node.level]
    assert relative == []


LAYERS = ["io", "augmentation", "features", "evaluation", "training", "serving"]  # each may use those before it


def test_sub_packages_import_only_the_layers_before_them():
    later = set()
    for i, layer in enumerate(LAYERS):
        for path in package_files(f"toolkit/{layer}"):
            for module in imported_modules(path):
                parts = module.split(".")
                if parts[0] == "toolkit" and len(parts) > 1 and parts[1] in LAYERS[i + 1:]:
                    later.add((os.path.relpath(path, ROOT), module))
    assert later == set()
