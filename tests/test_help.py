"""`python SCRIPT.py --help` answers before torch is imported (torch alone takes seconds, tens under load): each
script runs with `import torch` made to fail, as tests/test_onnx.py does for predict.py --backend onnx."""
import subprocess
import sys

import pytest

from conftest import ROOT

SCRIPTS = sorted(p.stem for p in ROOT.glob("*.py"))

BLOCK_TORCH = """
import sys
class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'torch': raise ImportError('torch is blocked')
sys.meta_path.insert(0, NoTorch())
"""
RUN_HELP = BLOCK_TORCH + """
import runpy
sys.argv = [sys.argv[1], '--help']
runpy.run_path(sys.argv[0], run_name='__main__')
"""


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_answers_without_importing_torch(script):
    proc = subprocess.run([sys.executable, "-c", RUN_HELP, f"{script}.py"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith(f"usage: {script}.py") and "--help" in proc.stdout


def test_the_registries_are_read_without_torch():
    """The model and feature registries (names, recipes, each feature's flags) import no torch; a network is built
    (torch imported) only when asked for."""
    code = BLOCK_TORCH + """
import argparse
import models, toolkit.features
print(",".join(models.MODEL_NAMES))
print(",".join(toolkit.features.STORED))
for name in toolkit.features.STORED:
    toolkit.features.FEATURES[name].add_args(argparse.ArgumentParser())
try:
    models.build_model("cnn3", 2)
except ImportError as e:
    print(e)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    model_names, stored, building = proc.stdout.splitlines()
    assert {"cnn3", "mlp", "wav2vec2"} <= set(model_names.split(",")) and {"mel", "egemaps"} <= set(stored.split(","))
    assert building == "torch is blocked"


def test_the_lazily_imported_classes_are_the_networks_own():
    import models
    from models import autoencoder, cnn, frame_mlp, speech

    modules = {"autoencoder": autoencoder, "cnn": cnn, "frame_mlp": frame_mlp, "speech": speech}
    for name, module in models.CLASSES.items():
        assert getattr(models, name) is getattr(modules[module], name)
    assert set(models.CLASSES) <= set(models.__all__)
    with pytest.raises(AttributeError):
        models.CNN4
