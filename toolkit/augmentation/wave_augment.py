"""Waveform augmentation aimed at voice variety: the field's usual transforms (Kaldi/SpeechBrain speed perturbation,
pitch shift, vocal-tract-length perturbation, additive noise at an SNR, room reverb, telephone and codec channels,
frequency drops, spectral tilt, gain, time shift), in one place.

Two users share this implementation: augmentation.py (a stage: augmented copies of the training clips written to
disk) and training's `--augment` (toolkit/augmentation/augment.py OnTheFly: each training item re-made from augmented audio before
its features, every epoch). A transform is a function (audio, sr, rng, **params) -> audio on mono float32 audio
with its parameters drawn from a numpy Generator by its `draw`; so the same seed gives the same audio, and every
copy can record exactly what was done to it (`describe`).
"""
from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from typing import Callable

import numpy as np

TELEPHONE_BAND = (300.0, 3400.0)  # ITU-T G.712 narrowband telephony, sampled at 8 kHz
TELEPHONE_RATE = 8000
PEAK_LIMIT = 0.99  # a chain that would clip is scaled down to this peak instead (clipping is not the voice's)
DEFAULT_PROBABILITY = 0.5  # a transform named without ':p' in a spec is applied to half the items
F0_RANGE = (90.0, 250.0)  # f0_to: targets drawn log-uniformly over adult speaking pitch, men's and women's alike
F0_SEMITONES = (3.0, 5.0)  # f0: the shift's size; 3-5 semitones move a typical voice's F0 to the other sex's edge
FORMANT_SPREAD = 0.06  # formants: up to +-6 % a region, about the spread of a formant's mean among adults of one sex
VOWEL_SEGMENT_S = 0.15  # vowels: new formant factors this often, about a syllable's length
BREATH_HNR_DB = (3.0, 15.0)  # breath: voice over aspiration noise; breathy voices measure ~0-15 dB HNR, modal ~20
TILT_DB_PER_OCTAVE = 3.0  # tilt: up to this many dB per octave; phonation (breathy to pressed) and microphones move
# a voice's spectral slope by roughly 10-15 dB over 0.1-4 kHz, about 3 dB an octave
TILT_PIVOT_HZ = 1000.0  # tilt: the frequency it leaves alone
TILT_FLOOR_HZ = 100.0  # tilt: below this the gain stays at its value there (no boost of rumble without limit)
BABBLE_VOICES = (3, 6)  # babble noise: this many other training clips (inclusive range) talking at once


def _resample(audio: np.ndarray, rate_in: float, rate_out: float) -> np.ndarray:
    import soxr

    return soxr.resample(audio.astype(np.float32), rate_in, rate_out).astype(np.float32)


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    return audio[:length] if len(audio) >= length else np.pad(audio, (0, length - len(audio)))


def speed(audio: np.ndarray, sr: int, rng: np.random.Generator, factor: float) -> np.ndarray:
    """Play `factor` times faster: duration / factor, pitch and formants x factor (Kaldi's and SpeechBrain's
    SpeedPerturb: a resampling)."""
    return _resample(audio, sr * factor, sr)


def tempo(audio: np.ndarray, sr: int, rng: np.random.Generator, factor: float) -> np.ndarray:
    """Speak `factor` times faster with pitch and formants kept (a phase vocoder's time stretch)."""
    import librosa

    return librosa.effects.time_stretch(audio, rate=factor).astype(np.float32)


def pitch(audio: np.ndarray, sr: int, rng: np.random.Generator, semitones: float) -> np.ndarray:
    """Move the pitch (and the spectrum with it) by `semitones`, duration kept (time stretch, then resampling)."""
    import librosa

    return librosa.effects.pitch_shift(audio, sr=sr, n_steps=semitones, res_type="soxr_hq").astype(np.float32)


def vtlp_warp(freqs: np.ndarray, alpha: float, nyquist: float, boundary: float = 4800.0) -> np.ndarray:
    """Jaitly & Hinton's (2013) piecewise-linear VTLP map: f -> alpha f up to a boundary, then a straight line to the
    Nyquist frequency, so the band stays full and the map monotonic."""
    knee = boundary * min(alpha, 1.0) / alpha
    upper = nyquist - (nyquist - boundary * min(alpha, 1.0)) / (nyquist - knee) * (nyquist - freqs)
    return np.where(freqs <= knee, alpha * freqs, upper)


def spectral_envelope(log_magnitude: np.ndarray, lifter: int) -> np.ndarray:
    """The smooth envelope of log-magnitude spectra (frames, freq): cepstral liftering, the first `lifter`
    quefrencies kept (below one pitch period, so the harmonics are smoothed away)."""
    from scipy.fft import irfft, rfft

    cepstrum = irfft(log_magnitude, axis=-1)
    cepstrum[..., lifter : cepstrum.shape[-1] - lifter + 1] = 0.0
    return rfft(cepstrum, axis=-1).real[..., : log_magnitude.shape[-1]]


def _stft_size(sr: int) -> tuple[int, int]:
    """(n_fft, hop) of the envelope transforms: 64 ms frames, 16 ms apart."""
    return 1024 * sr // 16000 or 256, 256 * sr // 16000 or 64


VOICE_LIFTER_S = 0.002  # f0 and breath: 2 ms, below the pitch period up to 500 Hz, sharper formants than vtlp's 1.5


def _log_envelope(spec: np.ndarray, sr: int, lifter_s: float) -> np.ndarray:
    """(frames, freq) cepstral log envelope of an STFT (freq, frames), liftered at `lifter_s` seconds (below the
    pitch period, so the harmonics are smoothed away; at least 8 quefrencies)."""
    return spectral_envelope(np.log(np.abs(spec.T) + 1e-8), max(8, int(lifter_s * sr)))


def warp_envelope(audio: np.ndarray, sr: int, warp: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """The spectral envelope (formants) moved by a monotonic frequency map, the harmonics (pitch) and the phase
    kept. `warp(freqs, frames)` gives where each frequency's envelope goes (Hz): (freqs,) for every frame alike, or
    (frames, freqs) for a map that changes over time. Each STFT frame's magnitude is multiplied by the ratio of its
    warped to its own cepstral envelope; the audio is resynthesised with the original phase."""
    import librosa

    n_fft, hop = _stft_size(sr)
    spec = librosa.stft(audio, n_fft=n_fft, hop_length=hop)
    envelope = _log_envelope(spec, sr, 0.0015)  # 1.5 ms: below the pitch period up to 600 Hz
    freqs = np.linspace(0, sr / 2, spec.shape[0])
    targets = np.atleast_2d(warp(freqs, spec.shape[1]))  # (1 or frames, freqs)
    source = np.stack([np.interp(freqs, target, freqs) for target in targets]) / freqs[1]  # whose envelope lands here
    low = np.minimum(source.astype(int), len(freqs) - 2)
    frac = source - low
    rows = np.arange(len(envelope))[:, None]
    warped = envelope[rows, low] * (1 - frac) + envelope[rows, low + 1] * frac  # linear interpolation, every frame
    gain = np.exp(warped - envelope).T
    out = librosa.istft(spec * gain, hop_length=hop, n_fft=n_fft, length=len(audio))
    return out.astype(np.float32)


def vtlp(audio: np.ndarray, sr: int, rng: np.random.Generator, alpha: float) -> np.ndarray:
    """Vocal-tract-length perturbation: the spectral envelope (formants) warped by `alpha` (> 1: a shorter tract,
    formants higher), the harmonics (pitch) and the phase kept."""
    return warp_envelope(audio, sr, lambda freqs, frames: vtlp_warp(freqs, alpha, sr / 2))


FORMANT_REGIONS = (500.0, 1500.0, 2500.0, 3500.0)  # Hz: where a neutral adult tract has F1-F4


def formant_map(freqs: np.ndarray, sr: int, factors) -> np.ndarray:
    """Where each frequency goes when each FORMANT_REGIONS region moves by its own factor: the factors linearly
    interpolated between the regions, 1 at 0 Hz and at the Nyquist frequency."""
    return freqs * np.interp(freqs, [0.0, *FORMANT_REGIONS, sr / 2], [1.0, *factors, 1.0])


def formants(audio: np.ndarray, sr: int, rng: np.random.Generator, factors: list[float]) -> np.ndarray:
    """Each formant region's part of the envelope moved by its own factor (one per FORMANT_REGIONS, linearly
    interpolated between them, 1 at 0 Hz and at the Nyquist frequency), pitch kept: the vowel targets of another
    accent or another tract shape, while the tract's overall length (what tells the sexes apart) stays about the same."""
    return warp_envelope(audio, sr, lambda freqs, frames: formant_map(freqs, sr, factors))


def vowels(audio: np.ndarray, sr: int, rng: np.random.Generator, spread: float, segment_s: float) -> np.ndarray:
    """Each formant region moved by its own factor within exp(+-spread), the factors drawn again every `segment_s`
    seconds (about a syllable) and interpolated between: every vowel's targets moved its own way, as in another
    accent, where `formants` moves all vowels alike. Pitch kept; the tract's mean length about the same."""
    hop = _stft_size(sr)[1]

    def warp(freqs: np.ndarray, frames: int) -> np.ndarray:
        knots = max(2, int(np.ceil(frames * hop / sr / segment_s)) + 1)
        factors = np.exp(rng.uniform(-spread, spread, (knots, len(FORMANT_REGIONS))))
        at = np.linspace(0, knots - 1, frames)
        per_frame = np.stack([np.interp(at, np.arange(knots), factors[:, r]) for r in range(len(FORMANT_REGIONS))], 1)
        return np.stack([formant_map(freqs, sr, ratio) for ratio in per_frame])

    return warp_envelope(audio, sr, warp)


def f0(audio: np.ndarray, sr: int, rng: np.random.Generator, semitones: float) -> np.ndarray:
    """Move the pitch by `semitones` and keep the formants: a pitch shift (which moves the whole spectrum), then each
    STFT frame given back the original frame's cepstral envelope, its harmonics and phase kept. Pitch apart from
    vocal tract: the low-pitched women and high-pitched men a corpus may lack, so that a model cannot read sex (or
    age) from pitch alone.

    A downward shift empties the band above `nyquist * 2**(semitones / 12)` (the resampling moved it down); that
    band is taken from the original clip, whose harmonics there are too dense for their spacing to matter. Without
    it every lowered copy would sound band-limited (at -6 semitones its long-term spectrum was 9 dB off, on average
    over the bands above 850 Hz)."""
    import librosa

    shifted = pitch(audio, sr, rng, semitones)
    n_fft, hop = _stft_size(sr)
    original_spec = librosa.stft(audio, n_fft=n_fft, hop_length=hop)
    shifted_spec = librosa.stft(shifted, n_fft=n_fft, hop_length=hop)
    own, moved = _log_envelope(original_spec, sr, VOICE_LIFTER_S), _log_envelope(shifted_spec, sr, VOICE_LIFTER_S)
    out = shifted_spec * np.exp(own - moved).T
    if semitones < 0:
        freqs = np.linspace(0, sr / 2, out.shape[0])[:, None]
        edge = sr / 2 * 2 ** (semitones / 12)
        kept = np.clip((edge - freqs) / (0.1 * edge), 0.0, 1.0)  # 1 below 90 % of the edge, a linear fade to 0 at it
        out = kept * out + (1 - kept) * original_spec
    return librosa.istft(out, hop_length=hop, n_fft=n_fft, length=len(audio)).astype(np.float32)


def speaking_f0(audio: np.ndarray, sr: int) -> float | None:
    """The median F0 (Hz) of a clip's loud frames (YIN), or None when it has too few of them."""
    import librosa

    frame, hop = 2048 * sr // 16000, 256 * sr // 16000
    f0s = librosa.yin(audio, fmin=60.0, fmax=500.0, sr=sr, frame_length=frame, hop_length=hop)
    rms = librosa.feature.rms(y=audio, frame_length=frame, hop_length=hop)[0][: len(f0s)]
    loud = rms > rms.max() * 10 ** (-20 / 20)  # within 20 dB of the loudest frame: the voiced part of speech
    return float(np.median(f0s[loud])) if loud.sum() >= 5 and rms.max() > 0 else None


def f0_to(audio: np.ndarray, sr: int, rng: np.random.Generator, target_hz: float) -> np.ndarray:
    """The pitch moved to a speaking F0 of `target_hz` (from the clip's own median, at most an octave), formants
    kept: with the target drawn the same way for every clip, the copies' pitch says nothing of the speaker's sex, age
    or any other label, where `f0`'s up-or-down shift leaves most men lower than most women."""
    own = speaking_f0(audio, sr)
    if own is None:
        return audio
    return f0(audio, sr, rng, float(np.clip(12 * np.log2(target_hz / own), -12.0, 12.0)))


def breath(audio: np.ndarray, sr: int, rng: np.random.Generator, hnr_db: float) -> np.ndarray:
    """A breathier voice: aspiration noise added under the voice, `hnr_db` below it (whole clip). Breath is glottal
    turbulence filtered by the same vocal tract, so the noise gets each frame's own cepstral envelope (formants and
    level: it follows the voice, silent in pauses), weighted towards the high band where aspiration shows
    (1 above ~2 kHz, falling 12 dB an octave below)."""
    import librosa

    n_fft, hop = _stft_size(sr)
    spec = librosa.stft(audio, n_fft=n_fft, hop_length=hop)
    freqs = np.linspace(0, sr / 2, spec.shape[0])[:, None]
    high = (freqs / 2000.0) ** 2 / (1 + (freqs / 2000.0) ** 2)
    phase = np.exp(2j * np.pi * rng.random(spec.shape))
    shaped = np.exp(_log_envelope(spec, sr, VOICE_LIFTER_S)).T * high * phase
    sound = librosa.istft(shaped, hop_length=hop, n_fft=n_fft, length=len(audio))
    scale = np.sqrt(power(audio) / (max(power(sound), 1e-20) * 10 ** (hnr_db / 10)))
    return (audio + scale * sound).astype(np.float32)


def _draw_formants(rng: np.random.Generator) -> dict:
    factors = np.exp(rng.uniform(-FORMANT_SPREAD, FORMANT_SPREAD, len(FORMANT_REGIONS)))
    return {"factors": [round(float(f), 3) for f in factors]}


def _draw_f0(rng: np.random.Generator) -> dict:
    return {"semitones": round(float(rng.choice([-1.0, 1.0]) * rng.uniform(*F0_SEMITONES)), 2)}


def power(audio: np.ndarray) -> float:
    return float(np.mean(np.square(audio, dtype=np.float64)))


def white_noise(length: int, rng: np.random.Generator) -> np.ndarray:
    return rng.standard_normal(length)


def pink_noise(length: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped in the frequency domain (equal energy per octave, like many real noises)."""
    spectrum = np.fft.rfft(rng.standard_normal(length))
    scale = 1 / np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    return np.fft.irfft(spectrum * scale, n=length)


def babble_noise(length: int, rng: np.random.Generator, voices: list[np.ndarray]) -> np.ndarray:
    """Several other clips talking at once, each at the same level, each from a random point (looped to length)."""
    total = np.zeros(length)
    for voice in voices:
        voice = np.tile(voice, int(np.ceil(length / len(voice))) + 1)
        start = int(rng.integers(0, len(voice) - length + 1))
        piece = voice[start : start + length].astype(np.float64)
        total += piece / np.sqrt(max(power(piece), 1e-12))
    return total


def noise(audio: np.ndarray, sr: int, rng: np.random.Generator, kind: str, snr_db: float, voices: int = 0,
          babble: list[np.ndarray] | None = None) -> np.ndarray:
    """Add white, pink or babble noise at `snr_db` (clip power over noise power, whole clip, as SpeechBrain's
    AddNoise); babble is made of `babble`, the audio of `voices` other training clips."""
    if kind == "babble":
        if not babble:
            raise ValueError("babble noise needs other clips' audio")
        sound = babble_noise(len(audio), rng, babble)
    else:
        sound = (pink_noise if kind == "pink" else white_noise)(len(audio), rng)
    scale = np.sqrt(power(audio) / (max(power(sound), 1e-20) * 10 ** (snr_db / 10)))
    return (audio + scale * sound).astype(np.float32)


def room_impulse(sr: int, rng: np.random.Generator, rt60: float, drr_db: float) -> np.ndarray:
    """A synthetic room: a direct path (1 at t=0) and an exponentially decaying noise tail that falls by 60 dB in
    `rt60` seconds, whose energy is `drr_db` below the direct path's (the direct-to-reverberant ratio)."""
    t = np.arange(1, max(2, int(rt60 * sr))) / sr
    tail = rng.standard_normal(len(t)) * np.exp(-3 * np.log(10) * t / rt60)  # amplitude: -60 dB at rt60
    tail *= np.sqrt(10 ** (-drr_db / 10) / max(float(np.sum(tail**2)), 1e-20))
    return np.concatenate([[1.0], tail])


def reverb(audio: np.ndarray, sr: int, rng: np.random.Generator, rt60: float, drr_db: float) -> np.ndarray:
    """The clip played in a synthetic room (room_impulse); the length is kept (the tail past the end is cut)."""
    from scipy.signal import fftconvolve

    return fftconvolve(audio, room_impulse(sr, rng, rt60, drr_db))[: len(audio)].astype(np.float32)


def mu_law(audio: np.ndarray, bits: int) -> np.ndarray:
    """Companded quantisation to 2**bits levels and back (G.711's mu-law at 8 bits): fine steps when quiet."""
    mu = 2**bits - 1
    peak = max(float(np.max(np.abs(audio))), 1e-9)
    x = np.clip(audio / peak, -1, 1)
    coded = np.round((np.sign(x) * np.log1p(mu * np.abs(x)) / np.log1p(mu) + 1) / 2 * mu)
    y = coded / mu * 2 - 1
    return (np.sign(y) * np.expm1(np.abs(y) * np.log1p(mu)) / mu * peak).astype(np.float32)


def band_pass(audio: np.ndarray, sr: float, low: float, high: float, order: int = 8) -> np.ndarray:
    """Zero-phase Butterworth band-pass (low 0: low-pass)."""
    from scipy.signal import butter, sosfiltfilt

    band = [low, high] if low > 0 else high
    sos = butter(order, band, btype="bandpass" if low > 0 else "lowpass", fs=sr, output="sos")
    return sosfiltfilt(sos, audio).astype(np.float32)


def telephone(audio: np.ndarray, sr: int, rng: np.random.Generator) -> np.ndarray:
    """A narrowband telephone channel: 8 kHz sampling, the 300-3400 Hz band, 8-bit mu-law (G.711); back at `sr`."""
    narrow = _resample(audio, sr, TELEPHONE_RATE)
    narrow = mu_law(band_pass(narrow, TELEPHONE_RATE, *TELEPHONE_BAND), 8)
    return _fit_length(band_pass(_resample(narrow, TELEPHONE_RATE, sr), sr, *TELEPHONE_BAND), len(audio))


def codec(audio: np.ndarray, sr: int, rng: np.random.Generator, cutoff_hz: float, bits: int) -> np.ndarray:
    """A lossy codec's band limit and coarse quantisation: the audio resampled to twice `cutoff_hz` (nothing above
    it survives), mu-law quantised to `bits` bits there, and resampled back."""
    rate = min(2 * cutoff_hz, sr)
    narrow = mu_law(_resample(audio, sr, rate), bits)
    return _fit_length(_resample(narrow, rate, sr), len(audio))


def drop_freq(audio: np.ndarray, sr: int, rng: np.random.Generator, freqs_hz: list[float], width_hz: float) -> np.ndarray:
    """Notch out narrow bands at `freqs_hz` (SpeechBrain's DropFreq): a channel or a voice missing some frequencies."""
    from scipy.signal import filtfilt, iirnotch

    out = audio.astype(np.float64)
    for f in freqs_hz:
        b, a = iirnotch(f, f / width_hz, fs=sr)
        out = filtfilt(b, a, out)
    return out.astype(np.float32)


def tilt(audio: np.ndarray, sr: int, rng: np.random.Generator, db_per_octave: float) -> np.ndarray:
    """A spectral slope of `db_per_octave` (> 0: brighter, as a pressed voice or a thin microphone; < 0: duller, as a
    breathy voice or a muffled one), 0 dB at TILT_PIVOT_HZ, zero phase over the whole clip."""
    spectrum = np.fft.rfft(audio.astype(np.float64))
    freqs = np.maximum(np.fft.rfftfreq(len(audio), 1 / sr), TILT_FLOOR_HZ)
    return np.fft.irfft(spectrum * 10 ** (db_per_octave * np.log2(freqs / TILT_PIVOT_HZ) / 20), len(audio)).astype(np.float32)


def gain(audio: np.ndarray, sr: int, rng: np.random.Generator, db: float) -> np.ndarray:
    """Louder or quieter by `db` (limited at the end of the chain so that nothing clips)."""
    return (audio * 10 ** (db / 20)).astype(np.float32)


def shift(audio: np.ndarray, sr: int, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Start later (seconds > 0: silence first, the end cut) or earlier (< 0: the start cut); the length is kept."""
    n = min(int(round(abs(seconds) * sr)), len(audio))
    out = np.zeros_like(audio)
    if seconds >= 0:
        out[n:] = audio[: len(audio) - n]
    else:
        out[: len(audio) - n] = audio[n:]
    return out


@dataclass(frozen=True)
class Transform:
    apply: Callable[..., np.ndarray]  # (audio, sr, rng, **params) -> audio
    draw: Callable[[np.random.Generator, int], dict]  # (rng, sr) -> params, from the field's usual ranges
    help: str


def _uniform(rng: np.random.Generator, low: float, high: float, digits: int = 3) -> float:
    return round(float(rng.uniform(low, high)), digits)


def _draw_noise(rng: np.random.Generator) -> dict:
    kind = str(rng.choice(["white", "pink", "babble"]))
    voices = {"voices": int(rng.integers(BABBLE_VOICES[0], BABBLE_VOICES[1] + 1))} if kind == "babble" else {}
    return {"kind": kind, "snr_db": _uniform(rng, 5.0, 20.0, 1), **voices}


# In the order a chain applies them: the voice (speed, tempo, pitch, vocal tract), the room, the noise in it, the
# channel it is recorded through, then level and timing. The ranges are the ones the field uses by default.
TRANSFORMS: dict[str, Transform] = {
    "speed": Transform(speed, lambda r, sr: {"factor": _uniform(r, 0.9, 1.1)},
                       "resampling: duration / f, pitch and formants x f, f in 0.9-1.1 (Kaldi, SpeechBrain)"),
    "tempo": Transform(tempo, lambda r, sr: {"factor": _uniform(r, 0.85, 1.15)},
                       "duration / f with pitch kept, f in 0.85-1.15"),
    "pitch": Transform(pitch, lambda r, sr: {"semitones": _uniform(r, -3.0, 3.0, 2)},
                       "-3..+3 semitones, duration kept"),
    "f0": Transform(f0, lambda r, sr: _draw_f0(r),
                    f"pitch up or down by {F0_SEMITONES[0]:g}-{F0_SEMITONES[1]:g} semitones with the formants kept"),
    "f0_to": Transform(f0_to, lambda r, sr: {"target_hz": round(float(np.exp(r.uniform(*np.log(F0_RANGE)))), 1)},
                       f"pitch moved to a speaking F0 drawn from {F0_RANGE[0]:g}-{F0_RANGE[1]:g} Hz, the same for every "
                       "clip, formants kept"),
    "vtlp": Transform(vtlp, lambda r, sr: {"alpha": _uniform(r, 0.9, 1.1)},
                      "vocal tract length: formants x alpha in 0.9-1.1, pitch kept (Jaitly & Hinton 2013)"),
    "formants": Transform(formants, lambda r, sr: _draw_formants(r),
                          f"each formant region (F1-F4) moved on its own by a factor in {np.exp(-FORMANT_SPREAD):.2f}-"
                          f"{np.exp(FORMANT_SPREAD):.2f}, pitch kept: another accent's vowels"),
    "vowels": Transform(vowels, lambda r, sr: {"spread": FORMANT_SPREAD, "segment_s": VOWEL_SEGMENT_S},
                        f"each formant region moved by its own factor in {np.exp(-FORMANT_SPREAD):.2f}-"
                        f"{np.exp(FORMANT_SPREAD):.2f}, drawn again every {VOWEL_SEGMENT_S:g} s: every vowel its own "
                        "way, as in another accent"),
    "breath": Transform(breath, lambda r, sr: {"hnr_db": _uniform(r, *BREATH_HNR_DB, 1)},
                        f"aspiration noise with the voice's own envelope, {BREATH_HNR_DB[0]:g}-{BREATH_HNR_DB[1]:g} dB "
                        "below it: a breathier voice"),
    "reverb": Transform(reverb, lambda r, sr: {"rt60": _uniform(r, 0.2, 0.8, 2), "drr_db": _uniform(r, 0.0, 10.0, 1)},
                        "a synthetic room: RT60 0.2-0.8 s, direct-to-reverberant ratio 0-10 dB"),
    "noise": Transform(noise, lambda r, sr: _draw_noise(r),
                       "additive white, pink or babble noise (other training clips) at 5-20 dB SNR"),
    "telephone": Transform(telephone, lambda r, sr: {},
                           "8 kHz, 300-3400 Hz, 8-bit mu-law (G.711)"),
    "codec": Transform(codec, lambda r, sr: {"cutoff_hz": float(r.choice([3500.0, 4000.0, 5500.0, 7000.0])),
                                             "bits": int(r.choice([6, 7, 8]))},
                       "band limit at 3.5, 4, 5.5 or 7 kHz and 6-8 bit mu-law quantisation"),
    "dropfreq": Transform(drop_freq, lambda r, sr: {"freqs_hz": sorted(_uniform(r, 100.0, 0.45 * sr, 0)
                                                                       for _ in range(int(r.integers(1, 4)))),
                                                    "width_hz": 0.025 * sr},
                          "1-3 narrow frequency bands notched out (SpeechBrain's DropFreq)"),
    "tilt": Transform(tilt, lambda r, sr: {"db_per_octave": _uniform(r, -TILT_DB_PER_OCTAVE, TILT_DB_PER_OCTAVE, 2)},
                      f"a spectral slope of -{TILT_DB_PER_OCTAVE:g}..+{TILT_DB_PER_OCTAVE:g} dB an octave around "
                      f"{TILT_PIVOT_HZ:g} Hz: a duller or brighter voice or microphone"),
    "gain": Transform(gain, lambda r, sr: {"db": _uniform(r, -6.0, 6.0, 1)}, "-6..+6 dB"),
    "shift": Transform(shift, lambda r, sr: {"seconds": _uniform(r, -0.25, 0.25)},
                       "-0.25..+0.25 s (silence in, the other end cut)"),
}
OFF = "none"


def parse_spec(text: str) -> dict[str, float]:
    """'speed:0.5,noise:0.3' (or 'speed,noise': probability 0.5 each; 'none': off) -> {name: probability} in
    TRANSFORMS order. A ValueError names what is wrong."""
    text = text.strip()
    if text in ("", OFF):
        return {}
    spec = {}
    for part in text.split(","):
        name, _, p = part.strip().partition(":")
        if name not in TRANSFORMS:
            raise ValueError(f"unknown transform {name!r}; choose from {', '.join(TRANSFORMS)}")
        try:
            probability = float(p) if p else DEFAULT_PROBABILITY
        except ValueError:
            raise ValueError(f"{part!r}: the probability after ':' must be a number in (0, 1]")
        if not 0 < probability <= 1:
            raise ValueError(f"{part!r}: the probability must be in (0, 1]")
        spec[name] = probability
    return {name: spec[name] for name in TRANSFORMS if name in spec}


def format_spec(spec: dict[str, float]) -> str:
    """The canonical text of a spec (what run cards record): 'speed:0.5,noise:0.3', or 'none'."""
    return ",".join(f"{name}:{p:g}" for name, p in spec.items()) or OFF


def spec_flag(text: str) -> str:
    """An argparse type: a transform spec, returned in its canonical form."""
    try:
        return format_spec(parse_spec(text))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e))


Step = tuple[str, dict]  # (transform name, its parameters)


def draw_chain(spec: dict[str, float], rng: np.random.Generator, sr: int, at_least_one: bool = False,
               babble: bool = True) -> list[Step]:
    """Which transforms to apply (each with its probability) and their parameters. at_least_one: when none comes up,
    one of them is picked (an augmented copy is never its source again). babble False: no other clips to make babble
    from, so noise is white or pink."""
    chosen = [name for name, p in spec.items() if rng.random() < p]
    if not chosen and at_least_one and spec:
        chosen = [list(spec)[int(rng.integers(len(spec)))]]
    chain = [(name, TRANSFORMS[name].draw(rng, sr)) for name in chosen]
    return [(name, {"kind": "pink", "snr_db": params["snr_db"]} if params.get("kind") == "babble" and not babble
             else params) for name, params in chain]


def apply_chain(audio: np.ndarray, sr: int, chain: list[Step], rng: np.random.Generator,
                babble: Callable[[int, np.random.Generator], list[np.ndarray]] | None = None) -> np.ndarray:
    """Apply the steps in order; babble(count, rng) gives that many other clips' audio (at `sr`) for babble noise.
    The result is finite float32, scaled down if it would clip."""
    out = audio.astype(np.float32)
    for name, params in chain:
        if params.get("kind") == "babble":
            params = {**params, "babble": babble(params["voices"], rng)}
        out = TRANSFORMS[name].apply(out, sr, rng, **params)
    out = np.nan_to_num(out.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.max(np.abs(out))) if len(out) else 0.0
    return out * (PEAK_LIMIT / peak) if peak > PEAK_LIMIT else out


def describe(chain: list[Step]) -> str:
    """A chain as one line for a CSV: 'speed(factor=0.93)+noise(kind=pink,snr_db=12.5)'."""
    return "+".join(f"{name}({','.join(f'{k}={json.dumps(v) if isinstance(v, list) else v}' for k, v in params.items())})"
                    for name, params in chain)


def spec_help() -> str:
    """The transforms in words, for --help."""
    return "; ".join(f"{name} ({t.help})" for name, t in TRANSFORMS.items())
