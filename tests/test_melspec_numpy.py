"""toolkit/io/melspec.py computes the STFT, the mel filterbank and the dB scale in numpy: the numbers of librosa's
stft, filters.mel and power_to_db, which the mel images were made with (and tests/test_mel_reference.py checks byte
for byte on the machine that made its fixture). Here against librosa itself, for settings beyond the default ones.

The filterbank and the window are the same elementwise numpy operations as librosa's and scipy's, so they are compared
exactly. The spectrogram's FFT is numpy's where librosa calls scipy's: the same pocketfft, equal bits where measured
(636 clips under 7 settings, AVX2), but two builds that another CPU could run down other vector paths, so it is compared
within float32 rounding.
"""
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from toolkit.features.mel import MelParams
from toolkit.io.melspec import hann_window, log_mel, mel_basis, mel_frequencies, power_spectrogram

SETTINGS = [MelParams(), MelParams(db_ref="fixed"), MelParams(mel_scale="htk", pad_mode="reflect"),
            MelParams(mel_scale="htk", pad_mode="reflect", n_fft=2048, hop_length=1024),  # the seed's age preset
            MelParams(sr=8000, n_fft=401, hop_length=160, n_mels=40, pad_mode="reflect")]


def librosa_log_mel(y, p):
    """The mel path as it was: librosa's stft, filterbank and power_to_db (commit f234813's toolkit/io/melspec.py)."""
    import librosa

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_fft is too large" for the shortest clips, "empty filters"
        power = np.abs(librosa.stft(y, n_fft=p.n_fft, hop_length=p.hop_length, window="hann", pad_mode=p.pad_mode)) ** 2
        basis = librosa.filters.mel(sr=p.sr, n_fft=p.n_fft, n_mels=p.n_mels, htk=p.mel_scale == "htk")
    db = librosa.power_to_db(basis @ power, ref=np.max if p.db_ref == "max" else 1.0, top_db=None)
    top = 0.0 if p.db_ref == "max" else 40.0
    return np.clip(db, top - p.top_db, top) - top


@pytest.mark.parametrize("p", SETTINGS, ids=lambda p: f"{p.mel_scale}-{p.pad_mode}-{p.n_fft}-{p.db_ref}")
def test_filterbank_window_and_band_centres_are_librosas(p):
    import librosa
    import scipy.signal

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = librosa.filters.mel(sr=p.sr, n_fft=p.n_fft, n_mels=p.n_mels, htk=p.mel_scale == "htk")
    assert mel_basis(p).dtype == np.float32
    np.testing.assert_array_equal(mel_basis(p), expected)
    np.testing.assert_array_equal(hann_window(p.n_fft), scipy.signal.get_window("hann", p.n_fft, fftbins=True))
    np.testing.assert_array_equal(mel_frequencies(p), librosa.mel_frequencies(p.n_mels + 2, fmin=0.0, fmax=p.sr / 2,
                                                                              htk=p.mel_scale == "htk")[1:-1])


def test_a_band_limited_filterbank_is_librosas():
    """LTAS asks for bands between fmin and fmax."""
    import librosa

    p = SimpleNamespace(sr=16000, n_fft=1024, n_mels=40, fmin=50.0, fmax=8000.0)
    expected = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=40, fmin=50.0, fmax=8000.0)
    np.testing.assert_array_equal(mel_basis(p), expected)


@pytest.mark.parametrize("p", SETTINGS, ids=lambda p: f"{p.mel_scale}-{p.pad_mode}-{p.n_fft}-{p.db_ref}")
def test_log_mel_is_librosas_for_clips_of_any_length(p):
    import librosa

    rng = np.random.default_rng(0)
    # around whole numbers of hops and windows, where librosa pads the clip's two ends separately: at n_fft 2048,
    # hop 1024, a 2048-sample clip's end is mirrored twice over ('reflect')
    for n in (700, 1535, 1536, 1537, 2047, 2048, 2049, 3072, 4096, 16000, 41000):
        y = (0.3 * rng.standard_normal(n)).astype(np.float32)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # librosa: "n_fft is too large" for the shortest
            power = np.abs(librosa.stft(y, n_fft=p.n_fft, hop_length=p.hop_length, pad_mode=p.pad_mode)) ** 2
        ours = power_spectrogram(y, p, hann_window(p.n_fft))
        assert ours.shape == power.shape and ours.dtype == np.float32, n
        np.testing.assert_allclose(ours, power, rtol=1e-5, atol=1e-6 * power.max(), err_msg=f"{n} samples")
        np.testing.assert_allclose(log_mel(y, p), librosa_log_mel(y, p), atol=1e-3, err_msg=f"{n} samples")


def test_empty_mel_bands_are_refused_in_one_line():
    from toolkit.errors import ToolkitError

    with pytest.raises(ToolkitError, match=r"mel bands are empty with n_fft 256 at 16000 Hz"):
        mel_basis(MelParams(n_fft=256, n_mels=180))
