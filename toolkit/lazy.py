"""torch, imported when first used. The feature types import it from here: the feature registry (stage 2's
--features choices and flags, every training stage's --features) is then read without the seconds `import torch`
takes, so `SCRIPT.py --help` answers at once (tests/test_help.py runs each script with torch blocked)."""
from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule(ModuleType):
    """Stands for module `name`: the first attribute asked of it imports the module and is looked up there."""

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self.__name__), attr)


torch = LazyModule("torch")
