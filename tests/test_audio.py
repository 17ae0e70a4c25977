import numpy as np
import pytest
import soundfile as sf

from toolkit.features.mel import Mel, MelParams, log_mel, read_image, save_png, to_image
from toolkit.io.audio import ClipError, load_audio


def tone(seconds=1.0, sr=16000, f0=150.0, amp=0.3):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * f0 * t) + 0.001 * np.random.default_rng(0).standard_normal(len(t))).astype(np.float32)


def test_log_mel_matches_librosa():
    import librosa

    y, p = tone(), MelParams()
    expected = librosa.power_to_db(
        librosa.feature.melspectrogram(y=y, sr=p.sr, n_fft=p.n_fft, hop_length=p.hop_length, n_mels=p.n_mels),
        ref=np.max, top_db=p.top_db)
    np.testing.assert_allclose(log_mel(y, p), expected, atol=1e-3)


def test_png_round_trips_to_the_same_array(tmp_path):
    p = MelParams()
    image = to_image(log_mel(tone(), p), p)
    assert image.dtype == np.uint8 and image.shape == (180, 1 + 16000 // 512)
    save_png(image, str(tmp_path / "x.png"))
    np.testing.assert_array_equal(read_image(str(tmp_path / "x.png")), image)
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_low_frequencies_are_at_the_bottom():
    p = MelParams()
    image = to_image(log_mel(tone(f0=150.0), p), p)
    assert image[-40:].mean() > image[:40].mean()


def test_stereo_44k_gives_the_same_image_as_mono_16k(tmp_path):
    import soxr

    y = tone(2.0, sr=44100)
    sf.write(tmp_path / "stereo.wav", np.stack([y, y], 1), 44100, subtype="PCM_16")
    sf.write(tmp_path / "mono.wav", soxr.resample(y, 44100, 16000), 16000, subtype="PCM_16")
    a = Mel(MelParams()).from_audio(str(tmp_path / "stereo.wav"))
    b = Mel(MelParams()).from_audio(str(tmp_path / "mono.wav"))
    assert a.shape == b.shape
    assert np.abs(a.astype(int) - b.astype(int)).mean() < 3


@pytest.mark.parametrize("content, message", [(b"", "empty file"), (b"RIFF\x00\x00garbage", "not a readable WAV file")])
def test_bad_files_are_clip_errors(tmp_path, content, message):
    (tmp_path / "bad.wav").write_bytes(content)
    with pytest.raises(ClipError, match=message):
        load_audio(str(tmp_path / "bad.wav"), 16000)


def test_silent_clip_is_a_clip_error(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(16000, np.float32), 16000)
    with pytest.raises(ClipError, match="silent"):
        load_audio(str(tmp_path / "silent.wav"), 16000)


def test_fixed_reference_keeps_loudness():
    quiet, loud = MelParams(db_ref="fixed"), MelParams(db_ref="fixed")
    a = to_image(log_mel(tone(amp=0.02), quiet), quiet).max()
    b = to_image(log_mel(tone(amp=0.5), loud), loud).max()
    assert int(b) - int(a) > 80  # 28 dB louder: about 28 * 255/80 = 89 grey levels brighter
    seed = MelParams()
    c = to_image(log_mel(tone(amp=0.02), seed), seed).max()
    d = to_image(log_mel(tone(amp=0.5), seed), seed).max()
    assert c == d == 255  # the seed's per-clip maximum normalises loudness away


def test_parameter_tag_changes_with_parameters():
    assert MelParams().tag() != MelParams(n_mels=128).tag()
    assert MelParams().tag() == MelParams().tag()
