"""The embedded demo corpus: a source-filter voice model that speaks CREMA-D's 12 sentences.

No real voices are shipped, so `make_demo_data.py` synthesises a corpus with CREMA-D's exact
layout (AudioWAV/ clip names, VideoDemographics.csv) whose clips carry the four traits the
toolkit classifies, so every stage can be run and must *learn* something:

- sex: speaking pitch (F0) and vocal-tract length (formant scale); the F0 ranges overlap a
  little and emotions move F0 a lot, so pitch alone does not separate the sexes;
- age: jitter, shimmer, breathiness, tremor, speaking rate and a slow F0 drift grow with age;
- emotion: pitch level and range, tempo, vocal effort (loudness and spectral tilt), breathiness,
  tremor (FEA), creak (DIS); the emotion level LO/MD/HI scales the effect;
- race: only a mild made-up "accent" (a vowel shift and a rhythm change) so the race task is
  learnable but hard. It is not a model of any real group's speech.

Everything is drawn from numpy Generators seeded by (seed, actor, clip name), so a clip's
bytes do not depend on which worker made it or in which order.

Besides the training voices ('standard') there are test settings (VOICE_SETTINGS): 'unseen' and 'boundary' move
pitch and vocal tract, and 'wide' adds VOICE_FAMILIES that the training voices never have (breathy, creaky and
pressed phonation, accents of a speaker's own, telephone and band-limited channels, reverberant rooms, low-pitched
women and high-pitched men, other speaking styles). Their draws come from streams of their own, so the other
settings' clips keep their bytes.
"""
from __future__ import annotations

import csv
import os
import time
import zlib
from dataclasses import dataclass, field, replace
from multiprocessing import Pool

import numpy as np
from scipy import signal

from toolkit.fileio import atomic_path
from toolkit.io.labels import CLASSES

SR = 16000
BLOCK = 128  # the vocal tract is re-tuned every 8 ms (formant movements are slower than that)
MIN_SECONDS, MAX_SECONDS = 1.3, 5.0

EMOTIONS = CLASSES["emotion"]
EMOTION_WORDS = dict(zip(EMOTIONS, ["angry", "disgusted", "afraid", "happy", "neutral", "sad"]))
LEVELS = ["LO", "MD", "HI"]
LEVEL_SCALE = {"LO": 0.5, "MD": 1.0, "HI": 1.5, "XX": 1.0}

SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}

# Each sentence as syllables "onset.vowel.coda". Consonant classes (one letter each):
# S sibilant (s z), X post-alveolar (sh ch j), F weak fricative (f v th), H (h),
# T stop (p t k b d g), N nasal (m n ng), L approximant (l r w y).
SYLLABLES = {
    "IEO": ".ih.TS .ih. L.eh. F.ah.N .ow. TL.aa.T",
    "TIE": "F.ae.T .ih.S .ih.TS T.ae.T L.iy. L.ah.T H.ae.T T.ah.N",
    "IOM": ".ay.N .aa.N N.ay. L.ey. T.uw. F.ah. N.iy. T.ih.N",
    "IWW": ".ay. L.ah.N T.er. L.ah.T F.ih.S .ih.S .ah. T.aw.T",
    "TAI": "F.ah. .eh.L TL.ey.N .ih.S .aa.L N.ow.ST F.uh.L",
    "MTI": "N.ey. T.iy. T.ah. N.aa. L.ow. .ih.T L.ih.L T.iy. T.ow.LT",
    "IWL": ".ay. L.uh.T L.ay.T .ah. N.uw. .ah. L.aa.N TL.aa.T",
    "ITH": ".ay. F.ih.NT .ay. H.ae.F .ah. T.aa.T T.er.S .ah. T.oy.NT N.ah.NT",
    "DFA": "T.ow.NT F.er. T.eh.T .ah. X.ae.T .ih.T",
    "ITS": ".ay. F.ih.NT .ay.F S.iy.N F.ih.S T.ih. F.ao.L",
    "TSI": "F.ah. S.er. F.ey.S .ih.S SL.ih.T",
    "WSI": "L.iy.L ST.aa.T .ih.N .ah. T.ah. T.ah.L .ah.F N.ih. N.ih.TS",
}

# Adult male formants F1-F4 (Hz; Peterson & Barney style); diphthongs glide start -> end.
VOWELS = {
    "iy": (270, 2290, 3010, 3600), "ih": (390, 1990, 2550, 3500), "eh": (530, 1840, 2480, 3500),
    "ae": (660, 1720, 2410, 3500), "ah": (520, 1190, 2390, 3500), "aa": (730, 1090, 2440, 3500),
    "ao": (570, 840, 2410, 3500), "uh": (440, 1020, 2240, 3500), "uw": (300, 870, 2240, 3500),
    "er": (490, 1350, 1690, 3300),
}
DIPHTHONGS = {"ay": ("aa", "ih"), "ey": ("eh", "iy"), "ow": ("ao", "uh"), "aw": ("aa", "uh"), "oy": ("ao", "iy")}
# The made-up accents: formant factors (F1, F2, F3, F4) per vowel. 0 has none.
ACCENT_VOWELS = {
    1: {"uw": np.array([1, 1.15, 1, 1]), "uh": np.array([1, 1.15, 1, 1]), "ao": np.array([1, 1.15, 1, 1]),
        "ae": np.array([0.9, 1.08, 1, 1])},  # fronted back vowels, raised /ae/
    2: {"ih": np.array([1.1, 1, 1, 1]), "eh": np.array([1.1, 1, 1, 1]), "ae": np.array([1.1, 1, 1, 1]),
        "iy": np.array([1.1, 1, 1, 1]), "er": np.array([1, 1, 1.25, 1]),
        "ah": np.array([1, 0.92, 1, 1])},  # open front vowels, no r-colouring
}
ACCENT_RANGE = {0: 1.0, 1: 1.2, 2: 0.85}  # pitch-accent height factor
NASAL_FORMANTS = (270, 1100, 2300, 3300)
LIQUID_FORMANTS = (380, 950, 2400, 3300)
BANDWIDTHS = np.array([70.0, 100.0, 150.0, 250.0])

# Consonant class -> (duration s, voicing, aspiration, frication band, frication amplitude)
CONSONANTS = {
    "S": (0.090, 0.0, 0.0, 0, 0.30),
    "X": (0.095, 0.0, 0.0, 1, 0.28),
    "F": (0.070, 0.0, 0.0, 2, 0.10),
    "H": (0.060, 0.0, 0.45, 0, 0.0),
    "T": (0.070, 0.0, 0.0, 2, 0.0),  # closure, then a burst (added below)
    "N": (0.060, 0.35, 0.0, 0, 0.0),
    "L": (0.050, 0.6, 0.0, 0, 0.0),
}
FRICATION_BANDS = [(3800, 7600), (2000, 6000), (1200, 7000)]  # S, X, F/bursts

# How each emotion moves the voice at level 1 (MD / XX). Additive terms are in semitones or dB,
# multiplicative terms are factors; a level scales the deviation from neutral.
# pitch st, range x, tempo x, energy dB, open quotient x, breath x, F1 x, formants x, tremor st, creak
EMOTION_STYLE = {
    "ANG": dict(pitch=3.5, range=1.5, tempo=1.12, energy=7.0, oq=0.70, breath=0.6, f1=1.10, formant=1.00, tremor=0.0, creak=0.0),
    "DIS": dict(pitch=-1.5, range=0.9, tempo=0.85, energy=-1.0, oq=1.05, breath=1.3, f1=0.97, formant=0.98, tremor=0.0, creak=1.0),
    "FEA": dict(pitch=5.0, range=0.8, tempo=1.15, energy=0.0, oq=1.10, breath=1.7, f1=1.00, formant=1.02, tremor=0.8, creak=0.0),
    "HAP": dict(pitch=3.0, range=1.8, tempo=1.05, energy=3.0, oq=0.85, breath=0.9, f1=1.04, formant=1.03, tremor=0.0, creak=0.0),
    "NEU": dict(pitch=0.0, range=1.0, tempo=1.00, energy=0.0, oq=1.00, breath=1.0, f1=1.00, formant=1.00, tremor=0.0, creak=0.0),
    "SAD": dict(pitch=-2.0, range=0.45, tempo=0.85, energy=-6.0, oq=1.25, breath=1.9, f1=0.95, formant=0.98, tremor=0.0, creak=0.0),
}
ADDITIVE = ("pitch", "energy", "tremor", "creak")

# Demographic proportions of the real corpus (VideoDemographics.csv, 91 actors).
AGE_BINS = [(20, 29, 0.37), (30, 39, 0.25), (40, 49, 0.18), (50, 59, 0.13), (60, 74, 0.07)]  # CLASSES["age"]: years, share
RACES = list(zip(CLASSES["race"] + ["Unknown"], [0.60, 0.23, 0.13, 0.04]))
MALE_SHARE, HISPANIC_SHARE = 0.53, 0.12
# The generator settings a corpus can be drawn from: (female, male) ranges of F0 (Hz) and formant scale, the
# background noise (dBFS, one-pole colour) and the glottal pulse. 'unseen' is the held-out kind of voice: pitch and
# vocal tract beyond the training ranges on each class's own side, louder hissy noise and another pulse shape.
# 'boundary' is a stress test: both sexes pushed toward (and a little past) the edge of the other's range.
# 'wide' is the honest development set for voices never heard: the training ranges of pitch and vocal tract, either
# pulse, any noise colour, and every speaker carries one or two of the VOICE_FAMILIES below (balanced over sex: as
# many women as men), so what a model gets wrong there can be put down to the families.
VOICE_SETTINGS = {
    "standard": dict(f0=((160, 250), (85, 145)), formant_scale=((1.12, 1.24), (0.90, 1.02)),
                     noise_db=(-60, -53), noise_colour=(0.85, 0.97), pulse="rosenberg"),
    "unseen": dict(f0=((235, 265), (66, 84)), formant_scale=((1.22, 1.30), (0.84, 0.92)),
                   noise_db=(-50, -42), noise_colour=(-0.4, 0.2), pulse="klglott"),
    "boundary": dict(f0=((160, 180), (130, 150)), formant_scale=((1.11, 1.16), (0.99, 1.04)),
                     noise_db=(-50, -42), noise_colour=(-0.4, 0.2), pulse="klglott"),
    "wide": dict(f0=((160, 250), (85, 145)), formant_scale=((1.12, 1.24), (0.90, 1.02)),
                 noise_db=(-60, -45), noise_colour=(-0.4, 0.97), pulse="klglott", male_share=0.5),
}
FIRST_ID = {("standard", False): 1001, ("standard", True): 2001, ("unseen", False): 3001, ("unseen", True): 4001,
            ("boundary", False): 5001, ("boundary", True): 6001, ("wide", False): 7001, ("wide", True): 8001}
# The kinds of voice and recording the training voices never have ('wide' setting), each still heard by a listener as
# the speaker's sex and emotion. The three phonations exclude each other (see wide_families).
VOICE_FAMILIES = {
    "breathy": "breathy phonation: glottis open most of the cycle, strong aspiration noise, weak upper harmonics",
    "creaky": "creaky voice (vocal fry): low, irregular and alternating pulses, most at phrase ends, in bursts elsewhere",
    "pressed": "pressed (tense) phonation: short open phase, little aspiration, narrow formants, flat spectral tilt",
    "accent": "an accent of the speaker's own: every vowel's formant targets shifted, and formant spacing unlike a scaled standard tract",
    "telephone": "a narrowband telephone channel (300-3400 Hz, 8 kHz G.711 mu-law) or a band-limited microphone (low-pass 3.8-5.5 kHz)",
    "reverb": "a reverberant room (RT60 0.35-0.9 s, direct-to-reverberant ratio -2 to +6 dB)",
    "crossed_pitch": "a low-pitched woman (F0 118-145 Hz, in the male range) or a high-pitched man (F0 165-195 Hz); formants keep the sex",
    "prosody": "another speaking style: much slower or faster (x0.72-0.85 or x1.2-1.35) and flatter or wider intonation",
}


# ----------------------------------------------------------------------------- corpus layout

def clip_names(actor_id: int) -> list[str]:
    """The 82 clip stems one CREMA-D actor records (IEO at three levels, the rest at XX)."""
    names = []
    for sentence in SENTENCES:
        for emotion in EMOTIONS:
            if sentence == "IEO" and emotion != "NEU":
                names += [f"{actor_id}_{sentence}_{emotion}_{level}" for level in LEVELS]
            else:
                names.append(f"{actor_id}_{sentence}_{emotion}_XX")
    return names


def choose_clips(actor_id: int, k: int | None, seed: int) -> list[str]:
    """All 82 clips, or k of them spread evenly over the emotions (deterministic by seed)."""
    names = clip_names(actor_id)
    if k is None or k >= len(names):
        return names
    rng = np.random.default_rng([seed, actor_id, 1])
    per_emotion = [[n for n in names if n.split("_")[2] == e] for e in EMOTIONS]
    per_emotion = [list(rng.permutation(group)) for group in per_emotion]
    start = int(rng.integers(len(EMOTIONS)))  # which emotions get the extra clip when k % 6 != 0
    order = []
    for i in range(max(len(g) for g in per_emotion)):
        for j in range(len(EMOTIONS)):
            group = per_emotion[(start + j) % len(EMOTIONS)]
            if i < len(group):
                order.append(str(group[i]))
    return sorted(order[:k])


def _apportion(n: int, shares: list[float], minimum: int = 0) -> list[int]:
    """Split n into integer counts close to n*shares (largest remainder), each >= minimum if possible."""
    minimum = minimum if n >= minimum * len(shares) else 0
    counts = [minimum] * len(shares)
    rest = n - minimum * len(shares)
    total = sum(shares)
    exact = [rest * s / total for s in shares]
    counts = [c + int(e) for c, e in zip(counts, exact)]
    by_remainder = sorted(range(len(shares)), key=lambda i: -(exact[i] - int(exact[i])))
    for i in by_remainder[: n - sum(counts)]:
        counts[i] += 1
    return counts


def draw_demographics(n: int, first_id: int, seed: int, male_share: float = MALE_SHARE) -> list[dict]:
    """n actors resembling CREMA-D's: ~53% male, ages 20-74 (mostly 20s-30s), race 60/23/13/4, 12% Hispanic.

    Sex and age bin are assigned by stratum (every sex and age bin gets >= 2 actors once n >= 10),
    then shuffled, so small corpora still contain every class.
    """
    rng = np.random.default_rng([seed, first_id, 7])
    n_male = min(max(round(male_share * n), min(2, n // 2)), n - min(2, n // 2))
    bins = [b for b, count in zip(AGE_BINS, _apportion(n, [b[2] for b in AGE_BINS], minimum=2)) for _ in range(count)]
    # Spread the sexes evenly along the age-sorted list so each age bin gets both where it can.
    sexes = ["Male" if (i + 1) * n_male // n > i * n_male // n else "Female" for i in range(n)]
    pairs = list(zip(sexes, bins))
    races = [r for (r, _), count in zip(RACES, _apportion(n, [s for _, s in RACES])) for _ in range(count)]
    n_hispanic = round(HISPANIC_SHARE * n)
    ethnicities = ["Hispanic"] * n_hispanic + ["Not Hispanic"] * (n - n_hispanic)
    pairs = [pairs[i] for i in rng.permutation(n)]
    races = [races[i] for i in rng.permutation(n)]
    ethnicities = [ethnicities[i] for i in rng.permutation(n)]
    actors = []
    for i, ((sex, (lo, hi, _)), race, ethnicity) in enumerate(zip(pairs, races, ethnicities)):
        age = int(rng.integers(lo, hi + 1))
        actors.append(dict(ActorID=first_id + i, Age=age, Sex=sex, Race=race, Ethnicity=ethnicity))
    return actors


# ----------------------------------------------------------------------------- the voice model

@dataclass
class Voice:
    """One actor's voice: everything that stays the same across their 82 clips."""
    actor_id: int
    sex: str
    age: int
    f0: float  # Hz, habitual speaking pitch
    formant_scale: float  # shorter vocal tract -> higher formants
    open_quotient: float  # glottal open phase / period: higher = softer, breathier, steeper tilt
    jitter: float  # relative cycle-to-cycle period perturbation
    shimmer: float  # relative cycle-to-cycle amplitude perturbation
    breath: float  # aspiration noise relative to the voiced source
    tremor: float  # semitones of slow (4-6 Hz) F0 wobble
    tempo: float  # syllable-rate factor
    pitch_range: float  # semitones of a typical pitch accent
    expressiveness: float  # how strongly the actor acts the emotions
    bandwidth_scale: float
    loudness_db: float
    noise_db: float  # background noise floor (dBFS)
    noise_colour: float  # one-pole coefficient: ~1 rumbly, 0 white, <0 hissy
    pulse: str  # glottal pulse shape: "rosenberg" or "klglott"
    accent: int  # 0, 1, 2: the made-up accent groups that carry "race"
    # The 'wide' setting's families (apply_families); the defaults change nothing, so other voices keep their bytes.
    families: tuple[str, ...] = ()
    vowel_shift: dict = field(default_factory=dict)  # vowel -> (F1..F4) factors: an accent of the speaker's own
    formant_dispersion: np.ndarray | None = None  # per-formant factors on top of formant_scale (another tract shape)
    fry: float = 0.0  # vocal fry: strength of low, irregular, alternating pulses (0 = none)
    channel: tuple[float, float] | None = None  # pass band (Hz) of the recording channel
    mu_law: bool = False  # telephone: 8 kHz sampling with G.711 8-bit mu-law companding
    rt60: float = 0.0  # room reverberation time (s); 0 = a dry booth
    drr_db: float = 0.0  # direct-to-reverberant energy ratio (dB)


def make_voice(actor: dict, seed: int, voices: str = "standard", families: tuple[str, ...] = ()) -> Voice:
    """Draw an actor's voice from their demographics. 'unseen' uses a different generator setting; 'wide' one more
    and the given VOICE_FAMILIES (build_corpus assigns them with wide_families)."""
    rng = np.random.default_rng([seed, actor["ActorID"], 11])
    male = actor["Sex"] == "Male"
    age = int(actor["Age"])
    old = np.clip((age - 20) / 50, 0.0, 1.0)
    if voices not in VOICE_SETTINGS:
        raise ValueError(f"unknown voices setting '{voices}': choose one of {', '.join(VOICE_SETTINGS)}")
    setting = VOICE_SETTINGS[voices]
    f0 = rng.uniform(*setting["f0"][male])
    formant_scale = rng.uniform(*setting["formant_scale"][male])
    noise_db, noise_colour = rng.uniform(*setting["noise_db"]), rng.uniform(*setting["noise_colour"])
    pulse = setting["pulse"]
    # Ageing: women's pitch drops, men's rises late; voices get rougher, breathier, slower.
    f0 *= (1 - 0.08 * old) if not male else (1 + 0.06 * old**2)
    accent = {"Caucasian": 0, "African American": 1, "Asian": 2}.get(actor["Race"], int(rng.integers(3)))
    voice = Voice(
        actor_id=int(actor["ActorID"]), sex=actor["Sex"], age=age, f0=float(f0), formant_scale=float(formant_scale),
        open_quotient=float(rng.uniform(0.45, 0.6) + (0.08 if not male else 0.0)),
        jitter=float(0.004 + 0.03 * old * rng.uniform(0.8, 1.2)),
        shimmer=float(0.03 + 0.25 * old * rng.uniform(0.8, 1.2)),
        breath=float(0.04 + 0.6 * old * rng.uniform(0.8, 1.2) + (0.03 if not male else 0.0)),
        tremor=float(1.0 * old**2 * rng.uniform(0.7, 1.3)),
        tempo=float((1.1 - 0.3 * old) * rng.uniform(0.88, 1.12)),
        pitch_range=float(rng.uniform(1.5, 3.0) * (1 - 0.3 * old)),
        expressiveness=float(rng.uniform(0.75, 1.25)),
        bandwidth_scale=float((1.0 + 0.8 * old) * rng.uniform(0.9, 1.1)),
        loudness_db=float(rng.uniform(-3, 3)),
        noise_db=float(noise_db), noise_colour=float(noise_colour), pulse=pulse, accent=accent,
    )
    if voices == "wide":  # its own random stream: the draws above stay those of the other settings
        voice = apply_families(voice, families, np.random.default_rng([seed, actor["ActorID"], 17]))
    return voice


def apply_families(voice: Voice, families: tuple[str, ...], rng: np.random.Generator) -> Voice:
    """The voice with the 'wide' setting's pulse choice and the given families (VOICE_FAMILIES) applied."""
    unknown = set(families) - set(VOICE_FAMILIES)
    if unknown:
        raise ValueError(f"unknown voice families {sorted(unknown)}: choose from {', '.join(VOICE_FAMILIES)}")
    male = voice.sex == "Male"
    v = replace(voice, families=tuple(families), pulse=str(rng.choice(["rosenberg", "klglott"])))
    if "breathy" in families:
        v.open_quotient = float(rng.uniform(0.72, 0.82))
        v.breath = float(v.breath + rng.uniform(0.45, 0.8))
    if "creaky" in families:
        v.fry = float(rng.uniform(0.45, 0.8))
        v.open_quotient = float(rng.uniform(0.35, 0.45))
        v.jitter = float(v.jitter + rng.uniform(0.005, 0.015))
    if "pressed" in families:
        v.open_quotient = float(rng.uniform(0.30, 0.38))
        v.breath = float(0.3 * v.breath)
        v.bandwidth_scale = float(0.8 * v.bandwidth_scale)
    if "accent" in families:
        spread = np.array([0.09, 0.07, 0.04, 0.02])  # F1 moves most between accents, F4 hardly
        v.vowel_shift = {vowel: np.exp(rng.normal(0, spread)) for vowel in VOWELS}
        v.formant_dispersion = np.exp(rng.normal(0, [0.05, 0.04, 0.03, 0.03]))
    if "telephone" in families:
        if rng.random() < 2 / 3:
            v.channel, v.mu_law = (300.0, 3400.0), True
        else:
            v.channel = (float(rng.uniform(80, 200)), float(rng.uniform(3800, 5500)))
    if "reverb" in families:
        v.rt60, v.drr_db = float(rng.uniform(0.35, 0.9)), float(rng.uniform(-2, 6))
    if "crossed_pitch" in families:  # the formant scale drawn above keeps the speaker's sex
        v.f0 = float(rng.uniform(165, 195) if male else rng.uniform(118, 145))
    if "prosody" in families:
        v.tempo = float(v.tempo * (rng.uniform(0.72, 0.85) if rng.random() < 0.5 else rng.uniform(1.2, 1.35)))
        v.pitch_range = float(v.pitch_range * (rng.uniform(0.45, 0.65) if rng.random() < 0.5 else rng.uniform(1.6, 2.0)))
    return v


PHONATIONS = ("breathy", "creaky", "pressed")


def wide_families(actors: list[dict]) -> dict[int, tuple[str, ...]]:
    """Each actor's families, balanced over sex: within each sex the actors take the families in turn, the first
    eight one family each, the next eight a second one 3 places on, the next a second one 5 places on (never two
    phonations), and so on."""
    names = list(VOICE_FAMILIES)
    out = {}
    for sex in ("Female", "Male"):
        for rank, actor in enumerate(a for a in actors if a["Sex"] == sex):
            first = names[rank % len(names)]
            offset = (0, 3, 5)[(rank // len(names)) % 3]
            second = names[(rank + offset) % len(names)]
            out[int(actor["ActorID"])] = (first,) if offset == 0 else (first, second)
    return out


def emotion_style(emotion: str, level: str, strength: float) -> dict:
    """The emotion's effect scaled by its level and the actor's expressiveness."""
    s = LEVEL_SCALE[level] * strength
    return {k: (v * s if k in ADDITIVE else v**s) for k, v in EMOTION_STYLE[emotion].items()}


def _vowel_formants(vowel: str, voice: Voice) -> tuple[np.ndarray, np.ndarray]:
    start, end = DIPHTHONGS.get(vowel, (vowel, vowel))
    shifts = ACCENT_VOWELS.get(voice.accent, {})
    a = np.array(VOWELS[start], float) * shifts.get(start, 1.0)
    b = np.array(VOWELS[end], float) * shifts.get(end, 1.0)
    if voice.vowel_shift:
        a, b = a * voice.vowel_shift[start], b * voice.vowel_shift[end]
    if voice.accent == 1 and vowel == "ay":
        b = a.copy()  # monophthongised /ay/
    return a, b


def _phones(sentence: str, voice: Voice, style: dict, rng: np.random.Generator) -> dict:
    """The sentence as a list of phones (one row each) with durations and source/filter targets."""
    rows = []  # (dur, voicing, aspiration, band, frication, burst, F_start[4], F_end[4], gain dB, accent st)
    syllables = SYLLABLES[sentence].split()
    # Long sentences are spoken faster (as in CREMA-D, where clip length grows slowly with syllables).
    tempo = voice.tempo * style["tempo"] * (len(syllables) / 7.5) ** 0.4
    stressed_long = 1.1 if voice.accent == 2 else 1.3  # accent 2 is syllable-timed: little stress lengthening
    unstressed_short = 1.0 if voice.accent == 2 else 0.85
    for i, syllable in enumerate(syllables):
        onset, vowel, coda = syllable.split(".")
        stressed = rng.random() < (0.6 if i == 0 else 0.4)
        fa, fb = _vowel_formants(vowel, voice)
        length = (stressed_long if stressed else unstressed_short) * (1.35 if i == len(syllables) - 1 else 1.0)
        vowel_dur = (0.16 if vowel in DIPHTHONGS else 0.12) * length
        accent = rng.uniform(0.6, 1.3) * voice.pitch_range * style["range"] * ACCENT_RANGE[voice.accent]
        accent = accent if stressed else 0.0
        for c in onset:
            rows.append(_consonant(c, fa))
        rows.append((vowel_dur, 1.0, 0.0, 0, 0.0, 0.0, fa, fb, 3.0 if stressed else 0.0, accent))
        for c in coda:
            rows.append(_consonant(c, fb))
    dur = np.array([r[0] for r in rows]) * np.exp(rng.normal(0, 0.12, len(rows))) / tempo
    columns = ["voicing", "aspiration", "band", "frication", "burst"]
    phones = {name: np.array([r[j + 1] for r in rows]) for j, name in enumerate(columns)}
    phones.update(dur=dur, f_start=np.array([r[6] for r in rows]), f_end=np.array([r[7] for r in rows]),
                  gain_db=np.array([r[8] for r in rows]), accent=np.array([r[9] for r in rows]))
    return phones


def _consonant(c: str, vowel_formants: np.ndarray) -> tuple:
    dur, voicing, aspiration, band, frication = CONSONANTS[c]
    f = np.array(NASAL_FORMANTS if c == "N" else LIQUID_FORMANTS if c == "L" else vowel_formants, float)
    return (dur, voicing, aspiration, band, frication, 1.0 if c == "T" else 0.0, f, f, 0.0, 0.0)


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    """Moving average along time (axis 0) with edge padding: coarticulation and gestures take time."""
    if width <= 1:
        return x
    kernel = np.ones(width) / width
    pad = [(width // 2, width - 1 - width // 2)] + [(0, 0)] * (x.ndim - 1)
    xp = np.pad(x, pad, mode="edge")
    return np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="valid"), 0, xp)


def _polymul(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Row-wise polynomial product of two (rows, degree+1) coefficient arrays."""
    out = np.zeros((p.shape[0], p.shape[1] + q.shape[1] - 1))
    for j in range(q.shape[1]):
        out[:, j : j + p.shape[1]] += p * q[:, j : j + 1]
    return out


def _glottal_flow(phase_in_cycle: np.ndarray, open_quotient: np.ndarray, pulse: str) -> np.ndarray:
    """Glottal flow over one cycle (0..1): opens, closes abruptly at the end of the open phase, stays shut."""
    p = phase_in_cycle / open_quotient
    if pulse == "rosenberg":
        opening = 0.62  # share of the open phase spent opening
        return np.where(p < opening, 0.5 * (1 - np.cos(np.pi * p / opening)),
                        np.where(p < 1, np.cos(0.5 * np.pi * (p - opening) / (1 - opening)), 0.0))
    return np.where(p < 1, 6.75 * p**2 * (1 - p), 0.0)  # KLGLOTT88: a polynomial pulse


def synthesize(voice: Voice, sentence: str, emotion: str, level: str, rng: np.random.Generator) -> np.ndarray:
    """One clip as float32 samples at 16 kHz (1.3-5.0 s, leading and trailing noisy silence)."""
    style = emotion_style(emotion, level, voice.expressiveness * rng.uniform(0.85, 1.15))
    ph = _phones(sentence, voice, style, rng)
    speech_s = ph["dur"].sum()
    lead, trail = rng.uniform(0.2, 0.6), rng.uniform(0.15, 0.55)
    if lead + speech_s + trail > MAX_SECONDS - 0.02:  # very slow readings: speak a little faster
        squeeze = (MAX_SECONDS - 0.02 - lead - trail) / speech_s
        ph["dur"] *= squeeze
        speech_s *= squeeze
    trail = max(trail, MIN_SECONDS + 0.02 - lead - speech_s)
    n = int(round((lead + speech_s + trail) * SR))
    n_blocks = -(-n // BLOCK)

    # Control tracks, one value per 8 ms block.
    t = (np.arange(n_blocks) + 0.5) * BLOCK / SR
    ends = lead + np.cumsum(ph["dur"])
    starts = ends - ph["dur"]
    idx = np.clip(np.searchsorted(ends, t), 0, len(ends) - 1)
    inside = (t >= lead) & (t < ends[-1])
    frac = np.clip((t - starts[idx]) / ph["dur"][idx], 0, 1)
    voicing = np.where(inside, ph["voicing"][idx], 0.0)
    aspiration = np.where(inside, ph["aspiration"][idx], 0.0)
    frication = np.where(inside, ph["frication"][idx], 0.0)
    burst = np.where(inside & (frac > 0.7), 0.5 * ph["burst"][idx], 0.0)  # stop release after the closure
    band = ph["band"][idx].astype(int)
    gain = 10 ** (ph["gain_db"][idx] / 20)
    formants = ph["f_start"][idx] + (ph["f_end"][idx] - ph["f_start"][idx]) * frac[:, None]
    formants = _smooth(formants, 5) * voice.formant_scale * style["formant"]
    if voice.formant_dispersion is not None:
        formants *= voice.formant_dispersion
    formants[:, 0] *= style["f1"]
    formants = np.minimum(formants, 0.45 * SR)
    voicing = _smooth(voicing * gain, 3)
    aspiration = _smooth(aspiration, 3)

    # Intonation in semitones: declination, pitch accents on stressed vowels, a final fall,
    # emotional level and tremor, age tremor, slow random drift.
    speech_frac = np.clip((t - lead) / speech_s, 0, 1)
    st = style["range"] * (1.0 - 3.0 * speech_frac)
    centres = (starts + ends) / 2
    for c, height in zip(centres[ph["accent"] > 0], ph["accent"][ph["accent"] > 0]):
        st += height * np.exp(-0.5 * ((t - c) / 0.07) ** 2)
    st -= 2.0 * style["range"] * np.clip((t - (ends[-1] - 0.25)) / 0.25, 0, 1)
    st += style["pitch"]
    st += style["tremor"] * np.sin(2 * np.pi * rng.uniform(5, 7) * t + rng.uniform(0, 2 * np.pi))
    st += voice.tremor * np.sin(2 * np.pi * rng.uniform(4, 5.5) * t + rng.uniform(0, 2 * np.pi))
    st += _smooth(rng.normal(0, 1.2, n_blocks), 15)
    creak = style["creak"] * np.clip((speech_frac - 0.65) / 0.35, 0, 1)  # disgust: creaky endings
    if voice.fry:  # a creaky speaker: fry towards the end of the phrase and in short bursts anywhere
        bursts = _smooth((rng.random(n_blocks) < 0.03).astype(float), 12) > 0
        fry = voice.fry * np.maximum(np.clip((speech_frac - 0.5) / 0.3, 0, 1), bursts)
        creak = np.clip(creak + fry, 0, 1)
        st -= 4.0 * fry
    st -= 5.0 * creak
    f0 = np.clip(voice.f0 * 2 ** (st / 12), 50, 500)

    # Source, per sample: a glottal pulse train with jitter and shimmer, plus aspiration noise.
    ts = np.arange(n) / SR
    f0_s = np.interp(ts, t, f0)
    jitter_s = voice.jitter * (1 + 4 * np.interp(ts, t, creak))
    if voice.fry:
        jitter_s = jitter_s + 0.06 * np.interp(ts, t, creak)
    cycles = np.cumsum(f0_s) / SR
    per_cycle = rng.standard_normal((2, int(cycles[-1]) + 2))
    f0_s = f0_s * (1 + np.clip(jitter_s * per_cycle[0][cycles.astype(int)], -0.3, 0.3))
    cycles = np.cumsum(f0_s) / SR
    k = cycles.astype(int)
    oq = np.clip(voice.open_quotient * style["oq"], 0.3, 0.9)
    flow = _glottal_flow(cycles - k, oq, voice.pulse)
    shimmer = np.clip(1 + voice.shimmer * per_cycle[1][np.minimum(k, per_cycle.shape[1] - 1)], 0.2, 2.0)
    if voice.fry:  # alternating strong and weak pulses (diplophonia), as in fry
        shimmer = shimmer * (1 - 0.5 * np.interp(ts, t, creak) * (k % 2))
    source = np.diff(flow, prepend=0.0) * shimmer  # flow derivative: lip radiation
    source /= np.sqrt(np.mean(source**2)) + 1e-9
    voicing_s = np.interp(ts, t, voicing)
    breath = voice.breath * style["breath"]
    noise = rng.standard_normal(n)
    breath_s = breath * voicing_s * (0.4 + 0.6 * flow)  # turbulence peaks while the glottis is open
    excitation = source * voicing_s + noise * (breath_s + np.interp(ts, t, aspiration))

    # Vocal tract: cascaded formant resonators (Klatt style, unity gain at DC), retuned per block.
    # The four resonators are multiplied out into one 8th-order filter per block because one
    # lfilter call is far cheaper than one sosfilt call. Only the speech span is filtered.
    b0 = max(int(np.searchsorted(t, lead)) - 1, 0)
    b1 = min(int(np.searchsorted(t, ends[-1])) + 6, n_blocks)
    bandwidths = BANDWIDTHS * voice.bandwidth_scale * (1 + 0.5 * breath)
    r = np.exp(-np.pi * bandwidths / SR)
    c = np.broadcast_to(-(r**2), formants.shape)
    b = 2 * r * np.cos(2 * np.pi * formants / SR)
    gain = np.prod(1 - b - c, axis=1)
    denominator = np.ones((n_blocks, 1))
    for i in range(4):
        denominator = _polymul(denominator, np.stack([np.ones(n_blocks), -b[:, i], -c[:, i]], axis=1))
    speech = np.zeros(n)
    zi = np.zeros(8)
    for blk in range(b0, b1):
        s = slice(blk * BLOCK, min((blk + 1) * BLOCK, n))
        speech[s], zi = signal.lfilter(gain[blk : blk + 1], denominator[blk], excitation[s], zi=zi)

    # Breathiness also hisses above the formants (a parallel branch, as in Klatt's synthesiser).
    active = voicing_s > 0.3
    rms = np.sqrt(np.mean(speech[active] ** 2)) if active.any() else 1.0
    speech += 0.6 * rms * signal.sosfilt(_bandpass(2000, 7500), noise * breath_s)

    # Consonant noise: fricatives and stop bursts, shaped by fixed band-pass filters, levelled
    # against the vowels (an /s/ is about 10 dB below the vowel next to it).
    fric_env = np.interp(ts, t, frication)
    burst_env = np.interp(ts, t, burst)
    band_s = band[np.minimum(np.arange(n) // BLOCK, n_blocks - 1)]
    white = rng.standard_normal(n)
    for j, (lo, hi) in enumerate(FRICATION_BANDS):
        env = fric_env * (band_s == j) + (burst_env if j == 2 else 0.0)
        if env.any():
            speech += rms * signal.sosfilt(_bandpass(lo, hi), white) * env

    if voice.rt60:
        speech = _reverberate(speech, voice.rt60, voice.drr_db, rng)

    # Level: vocal effort sets the speech level; the room noise floor stays, so SNR follows effort.
    rms = np.sqrt(np.mean(speech[active] ** 2)) if active.any() else 1.0
    speech *= 10 ** ((-26 + voice.loudness_db + style["energy"] + rng.normal(0, 1.0)) / 20) / (rms + 1e-12)
    room = signal.lfilter([1.0], [1.0, -voice.noise_colour], rng.standard_normal(n))
    room *= 10 ** ((voice.noise_db + rng.normal(0, 1.5)) / 20) / (np.sqrt(np.mean(room**2)) + 1e-12)
    out = speech + room
    if voice.channel:
        out = _channel(out, voice.channel, voice.mu_law)
    peak = np.max(np.abs(out))
    if peak > 0.98:  # shouting: turn the gain down rather than clip
        out *= 0.98 / peak
    return out.astype(np.float32)


def _reverberate(x: np.ndarray, rt60: float, drr_db: float, rng: np.random.Generator) -> np.ndarray:
    """x in a room: a direct path plus an exponentially decaying noise tail (60 dB down after rt60 s, darkening as
    it decays, from 5 ms on), the tail's energy drr_db below the direct sound's; the clip keeps its length."""
    t = np.arange(int(1.2 * rt60 * SR)) / SR
    tail = rng.standard_normal(len(t)) * np.exp(-6.91 * t / rt60) * (t > 0.005)
    tail = signal.lfilter([0.6], [1.0, -0.4], tail)  # air and walls absorb the highs
    tail *= np.sqrt(10 ** (-drr_db / 10) / np.sum(tail**2))
    tail[0] = 1.0
    return signal.fftconvolve(x, tail)[: len(x)]


def _channel(x: np.ndarray, band: tuple[float, float], mu_law: bool) -> np.ndarray:
    """x through a band-limited channel; with mu_law, a telephone line: band-pass, 8 kHz sampling, 8-bit G.711
    mu-law, back to 16 kHz and the receiver's band-pass."""
    sos = signal.butter(6, band, btype="bandpass", fs=SR, output="sos")
    y = signal.sosfilt(sos, x)
    if mu_law:
        narrow = np.clip(signal.resample_poly(y, 1, 2), -1, 1)
        code = np.round(np.sign(narrow) * np.log1p(255 * np.abs(narrow)) / np.log1p(255) * 127) / 127
        narrow = np.sign(code) * np.expm1(np.abs(code) * np.log1p(255)) / 255
        y = signal.sosfilt(sos, signal.resample_poly(narrow, 2, 1)[: len(x)])
    return y


_BANDPASS: dict[tuple, np.ndarray] = {}


def _bandpass(lo: float, hi: float) -> np.ndarray:
    if (lo, hi) not in _BANDPASS:
        _BANDPASS[lo, hi] = signal.butter(2, [lo, hi], btype="bandpass", fs=SR, output="sos")
    return _BANDPASS[lo, hi]


def clip_rng(seed: int, actor_id: int, clip: str) -> np.random.Generator:
    """A clip's own random stream: independent of worker order and of which other clips are made."""
    return np.random.default_rng([seed, actor_id, zlib.crc32(clip.encode())])


# ----------------------------------------------------------------------------- writing the corpus

def to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.round(np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


def write_wav(path: str, audio: np.ndarray) -> None:
    """16 kHz mono PCM_16 WAV, written atomically (never half-written)."""
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(tmp, to_pcm16(audio), SR, subtype="PCM_16", format="WAV")


def write_csv_rows(path: str, header: list[str], rows: list[list], quoting: int = csv.QUOTE_MINIMAL) -> None:
    """A CSV quoted as CREMA-D's own (VideoDemographics.csv quotes every text field), written atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f, quoting=quoting, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)


def _make_clip(job: tuple) -> float:
    """Worker: synthesise and write one clip unless it exists; returns its duration in seconds."""
    voice, clip, path, seed = job
    if os.path.exists(path):
        import soundfile as sf

        return sf.info(path).frames / SR
    _, sentence, emotion, level = clip.split("_")
    audio = synthesize(voice, sentence, emotion, level, clip_rng(seed, voice.actor_id, clip))
    write_wav(path, audio)
    return len(audio) / SR


def build_corpus(out: str, actors: int = 30, seed: int = 0, clips_per_actor: int | None = None, workers: int = 1,
                 unlabeled_actors: int = 0, voices: str = "standard", progress: bool = True) -> dict:
    """Write the demo corpus under `out`; existing WAVs are kept. Returns a summary dict."""
    from tqdm import tqdm

    started = time.time()
    audio_dir = os.path.join(out, "AudioWAV")
    os.makedirs(audio_dir, exist_ok=True)
    male_share = VOICE_SETTINGS[voices].get("male_share", MALE_SHARE)
    labeled = draw_demographics(actors, FIRST_ID[voices, False], seed, male_share)
    unlabeled = draw_demographics(unlabeled_actors, FIRST_ID[voices, True], seed, male_share) if unlabeled_actors > 0 else []
    families = {**wide_families(labeled), **wide_families(unlabeled)} if voices == "wide" else {}
    jobs = []
    for actor in labeled:
        voice = make_voice(actor, seed, voices, families.get(actor["ActorID"], ()))
        for clip in choose_clips(actor["ActorID"], clips_per_actor, seed):
            jobs.append((voice, clip, os.path.join(audio_dir, clip + ".wav"), seed))
    unlabeled_rows = []
    if unlabeled_actors > 0:
        unlabeled_dir = os.path.join(out, "Unlabeled", "AudioWAV")
        os.makedirs(unlabeled_dir, exist_ok=True)
        for actor in unlabeled:
            voice = make_voice(actor, seed, voices, families.get(actor["ActorID"], ()))
            clips = choose_clips(actor["ActorID"], clips_per_actor, seed)
            # File names carry the speaker only: the shuffled index reveals nothing about the emotion.
            order = np.random.default_rng([seed, actor["ActorID"], 3]).permutation(len(clips))
            for i, clip in zip(order, clips):
                name = f"{actor['ActorID']}_{i + 1:03d}.wav"
                jobs.append((voice, clip, os.path.join(unlabeled_dir, name), seed))
                unlabeled_rows.append([os.path.join("Unlabeled", "AudioWAV", name), name])
    todo = sum(not os.path.exists(j[2]) for j in jobs)
    bar = dict(total=len(jobs), desc="synthesising", unit="clip", disable=not progress, mininterval=0.5)
    if workers > 1 and todo > 1:
        with Pool(workers) as pool:
            durations = list(tqdm(pool.imap(_make_clip, jobs, chunksize=8), **bar))
    else:
        durations = [_make_clip(j) for j in tqdm(jobs, **bar)]

    write_csv_rows(os.path.join(out, "VideoDemographics.csv"), ["ActorID", "Age", "Sex", "Race", "Ethnicity"],
                   [[a["ActorID"], a["Age"], a["Sex"], a["Race"], a["Ethnicity"]] for a in labeled],
                   quoting=csv.QUOTE_NONNUMERIC)
    # The same corpus as a plain table, the shape of a user's own data (stage 1's --audio_column/--label_column).
    sex_of = {a["ActorID"]: a["Sex"].lower() for a in labeled}
    table = []
    for _, clip, path, _ in jobs:
        if os.path.dirname(path) == audio_dir:
            actor, _, emotion, _ = clip.split("_")
            table.append([f"AudioWAV/{clip}.wav", actor, sex_of[int(actor)], EMOTION_WORDS[emotion]])
    write_csv_rows(os.path.join(out, "clips.csv"), ["file", "speaker", "sex", "emotion"], table)
    if unlabeled_rows:
        write_csv_rows(os.path.join(out, "unlabeled.csv"), ["Audio_file_path", "Audio_file_name"], sorted(unlabeled_rows))
    if families:  # which families each speaker carries, for results per family (experiments/compare_heads.py)
        write_csv_rows(os.path.join(out, "voice_families.csv"), ["ActorID", "Sex", "families"],
                       [[a["ActorID"], a["Sex"], "+".join(families[a["ActorID"]])] for a in labeled + unlabeled])
    return dict(written=todo, clips=len(jobs), actors=actors, unlabeled_actors=unlabeled_actors,
                hours=sum(durations) / 3600, seconds=time.time() - started)

