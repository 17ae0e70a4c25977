import pytest
import torch

from models import MODEL_NAMES, AutoEncoder, build_model, canonical_name
from toolkit.errors import ToolkitError


@pytest.mark.parametrize("name", MODEL_NAMES + ["efficientnet_b2", "renset34"])
def test_every_model_builds_and_runs_forward(name):
    model = build_model(name, num_classes=5).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 128, 128))
    assert out.shape == (2, 5)
    assert torch.isfinite(out).all()


def test_cnn3_encoder_matches_autoencoder_encoder():
    cnn3 = {k.removeprefix("encoder."): v.shape for k, v in build_model("cnn3", 2).state_dict().items() if k.startswith("encoder.")}
    ae = {k.removeprefix("encoder."): v.shape for k, v in AutoEncoder().state_dict().items() if k.startswith("encoder.")}
    assert cnn3 == ae
    assert len(cnn3) > 0
    # and the encoder weights load strictly into cnn3
    model = build_model("cnn3", 2)
    model.encoder.load_state_dict(AutoEncoder().encoder.state_dict(), strict=True)


def test_cnn3_layers_are_the_seeds():
    model = build_model("cnn3", 6)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in convs] == [
        (3, 16, (4, 4), (2, 2)), (16, 32, (4, 4), (2, 2)), (32, 64, (4, 4), (2, 2))]
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(64 * 14 * 14, 128), (128, 64), (64, 6)]


def test_cnn9_has_nine_convolutions():
    model = build_model("cnn9", 3)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 128, 256, 256, 256, 256, 256]
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in model.modules()) == 4


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ToolkitError, match="unknown model 'resnet50'"):
        canonical_name("resnet50")


def test_missing_imagenet_weights_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    import torchvision.models as tvm

    monkeypatch.setattr(tvm.ResNet18_Weights.DEFAULT, "get_state_dict", lambda **kw: (_ for _ in ()).throw(OSError("offline")))
    with pytest.raises(ToolkitError, match="--no-pretrained"):
        build_model("resnet18", 2, pretrained=True)


def test_weights_file_is_used(tmp_path):
    import torchvision.models as tvm

    reference = tvm.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    model = build_model("resnet18", 3, weights=str(tmp_path / "r18.pth"))
    assert torch.equal(model.conv1.weight, reference.conv1.weight)
    assert model.fc.out_features == 3
