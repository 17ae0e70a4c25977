"""Faithful to the seed project where it matters: its networks (seed-layout reimplementations below, written from
its description: the same layers, names and order), its checkpoints (convert_seed_checkpoint.py), its metadata files."""
import pytest
import torch
from torch import nn

from conftest import run_script
from models import CNN3, CNN9, Decoder, Encoder


class SeedEncoder(nn.Module):
    """The seed's encoder: enc1 tanh, enc2 batchnorm tanh, enc3 tanh, flatten, encoder_lin (two Linear)."""

    def __init__(self):
        super().__init__()
        self.enc1, self.enc2 = nn.Conv2d(3, 16, 4, 2), nn.Conv2d(16, 32, 4, 2)
        self.batchnorm, self.enc3 = nn.BatchNorm2d(32), nn.Conv2d(32, 64, 4, 2)
        self.encoder_lin = nn.Sequential(nn.Linear(64 * 14 * 14, 128), nn.Linear(128, 64))

    def forward(self, x):
        x = torch.tanh(self.batchnorm(self.enc2(torch.tanh(self.enc1(x)))))
        return self.encoder_lin(torch.flatten(torch.tanh(self.enc3(x)), 1))


class SeedCNN3(SeedEncoder):
    def __init__(self, classes):
        super().__init__()
        self.classifier = nn.Linear(64, classes)

    def forward(self, x):
        return self.classifier(super().forward(x))


class SeedCNN9(nn.Module):
    """conv_k -> ReLU -> convnorm_k, zero-pad 2 after 1-8, max-pool after 2, 4, 6, 8, ReLU after convnorm9."""

    def __init__(self, classes):
        super().__init__()
        widths = [3, 16, 32, 64, 128, 256, 256, 256, 256, 256]
        for k in range(1, 10):
            setattr(self, f"conv{k}", nn.Conv2d(widths[k - 1], widths[k], 3))
            setattr(self, f"convnorm{k}", nn.BatchNorm2d(widths[k]))
        self.linear = nn.Linear(256, classes)

    def forward(self, x):
        for k in range(1, 10):
            x = getattr(self, f"convnorm{k}")(torch.relu(getattr(self, f"conv{k}")(x)))
            if k <= 8:
                x = nn.functional.pad(x, (2, 2, 2, 2))
            if k in (2, 4, 6, 8):
                x = nn.functional.max_pool2d(x, 2)
        x = torch.relu(x)
        return self.linear(nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


class SeedDecoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.decoder_lin = nn.Sequential(nn.Linear(64, 128), nn.Linear(128, 64 * 14 * 14))
        self.dec1, self.batchnorm1 = nn.ConvTranspose2d(64, 32, 4, 2), nn.BatchNorm2d(32)
        self.dec2, self.batchnorm2 = nn.ConvTranspose2d(32, 16, 4, 2, output_padding=1), nn.BatchNorm2d(16)
        self.dec3 = nn.ConvTranspose2d(16, 3, 4, 2)

    def pre_activation(self, code):
        x = self.decoder_lin(code).unflatten(1, (64, 14, 14))
        x = torch.tanh(self.batchnorm2(self.dec2(torch.tanh(self.batchnorm1(self.dec1(x))))))
        return self.dec3(x)


def randomised(model: nn.Module) -> nn.Module:
    """Random weights and BatchNorm statistics (not the initial 0/1), in eval mode."""
    torch.manual_seed(0)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in name else torch.randn_like(t) * 0.1)
    return model.eval()


def convert(tmp_path, seed_model, kind):
    torch.save(seed_model.state_dict(), tmp_path / "seed.pt")
    proc = run_script("convert_seed_checkpoint.py", "--model", kind, "--input", tmp_path / "seed.pt", "--output", tmp_path / "ours.pt",
                      in_process=True)
    assert "loading strictly into ours" in proc.stdout
    return torch.load(tmp_path / "ours.pt", weights_only=True)


@pytest.mark.parametrize("kind, seed_cls, our_cls", [("cnn3", SeedCNN3, CNN3), ("cnn9", SeedCNN9, CNN9)])
def test_converted_seed_classifiers_give_the_seeds_outputs(tmp_path, kind, seed_cls, our_cls):
    seed = randomised(seed_cls(5))
    ours = our_cls(5).eval()
    ours.load_state_dict(convert(tmp_path, seed, kind), strict=True)
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), seed(x), rtol=1e-5, atol=1e-5)  # cnn9 needs its last ReLU for this


def test_converted_seed_autoencoder_matches_up_to_the_decoders_last_activation(tmp_path):
    seed_encoder, seed_decoder = randomised(SeedEncoder()), randomised(SeedDecoder())
    encoder, decoder = Encoder().eval(), Decoder().eval()
    encoder.load_state_dict(convert(tmp_path, seed_encoder, "encoder"), strict=True)
    decoder.load_state_dict(convert(tmp_path, seed_decoder, "decoder"), strict=True)
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        code = encoder(x)
        torch.testing.assert_close(code, seed_encoder(x), rtol=1e-5, atol=1e-5)
        # ours ends in sigmoid (inputs are in [0, 1]), the seed's in tanh: the same pre-activation
        torch.testing.assert_close(decoder.deconv[:-1](decoder.fc(code)), seed_decoder.pre_activation(code), rtol=1e-5, atol=1e-5)


def test_a_checkpoint_of_another_model_is_a_one_line_error(tmp_path):
    torch.save(SeedCNN9(2).state_dict(), tmp_path / "seed.pt")
    proc = run_script("convert_seed_checkpoint.py", "--model", "cnn3", "--input", tmp_path / "seed.pt",
                      "--output", tmp_path / "o.pt", check=False, in_process=True)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
    assert "seed.pt: parameter 'conv1.weight' is not one of the seed's names for this model" in proc.stderr
    assert not (tmp_path / "o.pt").exists()
