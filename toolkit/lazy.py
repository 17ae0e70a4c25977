"""torch, imported when first used. The modules a stage's --help reads (the feature registry and its feature types,
the training data and batches) import it from here instead of `import torch` at their top: their names, flags and
defaults are then read without the seconds torch takes to import, so `SCRIPT.py --help` answers at once
(tests/test_help.py runs each script with torch blocked)."""
from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule(ModuleType):
    """Stands for module `name`: the first attribute asked of it imports the module and is looked up there."""

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self.__name__), attr)


torch = LazyModule("torch")
