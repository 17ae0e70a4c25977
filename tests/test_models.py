import re

import pytest
import torch

from models import MODEL_NAMES, MODELS, AutoEncoder, build_model, canonical_name
from toolkit.errors import ToolkitError


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if MODELS[n].takes == "image"] + ["efficientnet_b2", "renset34"])
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


@pytest.mark.parametrize("name", ["linear", "mlp"])
@pytest.mark.parametrize("shape", [(88,), (13, 32)], ids=["vector", "layer stack"])
def test_vector_heads_take_vectors_and_layer_stacks(name, shape):
    model = build_model(name, 4, shape).eval()
    with torch.no_grad():
        out = model(torch.rand(5, *shape))
    assert out.shape == (5, 4) and torch.isfinite(out).all()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears[0].in_features == shape[-1] and linears[-1].out_features == 4
    assert len(linears) == (1 if name == "linear" else 2)
    stacked = [p for n, p in model.named_parameters() if n.startswith("layers.")]
    assert [tuple(p.shape) for p in stacked] == ([(shape[0],)] if len(shape) == 2 else [])


def test_layer_weights_learn_which_layer_carries_the_label():
    torch.manual_seed(0)
    x = torch.randn(256, 4, 8)
    y = (x[:, 2, 0] > 0).long()  # only layer 2 knows the class
    model = build_model("linear", 2, (4, 8))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(200):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    assert int(torch.softmax(model.layers.weights, 0).argmax()) == 2
    assert (model(x).argmax(1) == y).float().mean() > 0.95


@pytest.mark.parametrize("name, kind, shape, message", [
    ("cnn3", "vector", (88,), "holds vector features, but cnn3 takes image features; use one of linear, mlp"),
    ("mlp", "image", (3, 128, 128), "holds image features, but mlp takes vector features; use one of cnn3"),
    ("cnn3", "image", (3, 128, 64), "cnn3 takes 128×128 images (its Linear layer is sized for them), these are 128×64"),
])
def test_a_model_given_features_it_cannot_take_is_a_clear_error(name, kind, shape, message):
    from models import check_input

    with pytest.raises(ToolkitError, match=re.escape(message)):
        check_input(name, kind, shape, "x_train.csv")
    check_input("cnn9", "image", (3, 128, 64), "x_train.csv")  # adaptive pooling: any size


def test_the_registry_is_the_one_list_of_models():
    from models import MODELS, replace_head

    assert MODEL_NAMES == list(MODELS) and {"linear", "mlp"} <= set(MODELS)
    imagenet = {n for n, spec in MODELS.items() if spec.imagenet}
    assert imagenet == {"resnet18", "resnet34", "vgg16", "efficientnet"}
    net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(8, 1000)))
    replace_head(net, 3)  # the last Linear, wherever it sits
    assert net[1][1].out_features == 3 and net[0].out_features == 8


def frame_logits(model, image: torch.Tensor) -> torch.Tensor:
    """(frames, classes): frame_mlp's logits for each column of one grey (H, W) image on its own."""
    return torch.cat([model(image[None, None, :, [t]].expand(1, 3, -1, 1)) for t in range(image.shape[1])])


def test_frame_mlp_averages_the_logits_of_the_loud_frames_only():
    torch.manual_seed(0)
    model = build_model("frame_mlp", 3, (3, 128, 100)).eval()
    voice = 0.6 + 0.2 * torch.rand(128, 40)  # loud frames, different spectra
    quiet = 0.1 * torch.rand(128, 10)  # 40 dB below: a pause
    image = torch.cat([voice[:, :20], quiet, voice[:, 20:], torch.zeros(128, 30)], 1)  # and 30 padded columns
    with torch.no_grad():
        clip = model(image[None, None].expand(1, 3, -1, -1))[0]
        expected = frame_logits(model, voice).mean(0)
    torch.testing.assert_close(clip, expected, rtol=1e-4, atol=1e-5)


def test_frame_mlp_ignores_each_frames_level_but_not_its_spectrum():
    torch.manual_seed(0)
    model = build_model("frame_mlp", 2, (3, 128, 64)).eval()
    image = 0.4 + 0.3 * torch.rand(1, 3, 128, 64)
    louder = image + 0.2 * torch.rand(1, 1, 1, 64)  # each frame a different gain: a level, not a spectrum
    tilted = image + torch.linspace(-0.1, 0.1, 128)[None, None, :, None]  # the same level, another spectrum
    with torch.no_grad():
        torch.testing.assert_close(model(louder), model(image), rtol=1e-4, atol=1e-5)
        assert (model(tilted) - model(image)).abs().max() > 1e-3


def test_frame_mlp_learns_a_spectral_shape_the_frames_share():
    torch.manual_seed(0)
    y = torch.randint(0, 2, (128,))
    band = torch.where(y[:, None] == 1, 40, 80) + torch.randint(-6, 7, (128, 1))  # a formant-like peak per class
    rows = torch.arange(128)[None, :, None]
    x = 0.5 + 0.1 * torch.rand(128, 1, 128, 32) + 0.2 * ((rows - band[:, :, None]).abs() < 4)[:, None]
    x = x.expand(-1, 3, -1, -1)
    model = build_model("frame_mlp", 2, (3, 128, 32))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(60):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    assert (model.eval()(x).argmax(1) == y).float().mean() > 0.95
