"""experiments/envelope_screen.py: the round-5 screening of envelope features and extra copies runs on a stage-1
corpus, caches every corpus's features, counts the extra copies as training rows and explains a speaker's logit."""
from __future__ import annotations

import re
import sys
from pathlib import Path

from conftest import run_script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))


def test_screens_features_with_extra_copies_and_explains_a_speaker(sex_data, tmp_path, capsys):
    import envelope_screen

    speaker = sorted((sex_data / "AudioWAV").iterdir())[0].name.split("_")[0]
    argv = ["--train", str(sex_data), "--test", f"same={sex_data}", "--extra", "gain:1", "--features", "ltas", "scale",
            "--C", "1", "--explain", f"same={speaker}", "--cache", str(tmp_path / "cache")]
    envelope_screen.main(argv)
    out = capsys.readouterr().out
    clips = len(list((sex_data / "AudioWAV").glob("*.wav")))
    assert f"training rows: {2 * clips} (copies: -; extra: gain:1; more voices: -)" in out
    ltas_line = next(line for line in out.splitlines() if line.startswith("ltas "))
    assert float(re.search(r"same (\d\.\d+)", ltas_line).group(1)) > 0.9  # scored on the clips it learned from
    assert re.search(rf"same {speaker}: mean logit for Male [+-]\d+\.\d .*furthest towards Female: (mean|spread)@\d+Hz", out)
    cached = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(cached) == 2 and any("gain1" in name for name in cached)  # the corpus once, its gain copies once
    envelope_screen.main(argv)  # a rerun scores from the cache: the same table
    assert capsys.readouterr().out == out

    proc = run_script("experiments/envelope_screen.py", "--train", sex_data, "--test", f"other={tmp_path / 'none'}",
                      "--cache", tmp_path / "cache", check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].endswith(f"{tmp_path / 'none' / 'sex_with_audio_path.csv'}: no such file; "
                                                         "run data_preprocessing.py --category sex (or augmentation.py) there first")
