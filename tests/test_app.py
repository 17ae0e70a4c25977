"""app.py, the web demo: started as a user starts it, driven in headless Chromium, compared with predict.py."""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from conftest import ROOT, run_script

START_SECONDS = 60  # torch + gradio imports on a busy 2-core machine


@pytest.fixture(scope="session")
def browser() -> tuple[str, str]:
    """(chromium, chromedriver); the browser test skips, before a model is trained for it, when either is not
    installed (make test installs both where apt-get can)."""
    chromium = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
    driver = shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip("chromium and chromedriver are needed for the browser test (apt-get install chromium chromium-driver)")
    return chromium, driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_served(proc: subprocess.Popen, url: str, log) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise AssertionError(f"app.py exited {proc.returncode} before serving:\n{log.read()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"app.py did not serve {url} within {START_SECONDS} s")


def long_clip(sex_data, folder) -> str:
    """Three clips of one test speaker end to end (~9 s): several windows, so the mean over windows is exercised."""
    table = pd.read_csv(sex_data / "sex_test.csv")
    paths = [sex_data / p for p in table["Audio_file_path"][:3]]
    audio = [sf.read(p, dtype="float32") for p in paths]
    path = folder / "three clips.wav"  # a space: the name travels through the upload and the page as is
    sf.write(path, np.concatenate([y for y, _ in audio]), audio[0][1])
    return str(path)


def shown_probabilities(text: str) -> tuple[str, dict[str, float]]:
    """'sex: Male (Male 0.731, Female 0.269)' -> ('Male', {'Male': 0.731, 'Female': 0.269})."""
    match = re.search(r"sex: (\w+) \(([^)]*)\)", text)
    assert match, f"no probabilities in {text!r}"
    return match[1], {c: float(p) for c, p in (item.rsplit(" ", 1) for item in match[2].split(", "))}


def test_the_page_shows_predict_pys_probabilities_for_an_upload(browser, trained_cnn3, sex_data, tmp_path):
    chromium, driver = browser
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    clip = long_clip(sex_data, tmp_path)
    uploads = tmp_path / "gradio"  # the demo's temporary folder: the upload must land there and nowhere else
    port = free_port()
    log = open(tmp_path / "app.log", "w+")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_TEMP_DIR": str(uploads)}
    app = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--model_dir", str(trained_cnn3), "--port", str(port),
                            "--device", "cpu", "--max_mb", "1"], cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=env)
    page = None
    try:
        # predict.py runs while the demo starts: the reference numbers for the same file and model folder
        out = tmp_path / "predicted.csv"
        run_script("predict.py", "--model_dir", trained_cnn3, "--model_file", "cnn3_sex.pt", clip, "--out", out, "--device", "cpu",
                   in_process=True)
        expected = pd.read_csv(out).iloc[0]
        assert expected["windows"] >= 3
        wait_until_served(app, f"http://127.0.0.1:{port}/", log)

        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1900",
                     f"--user-data-dir={tmp_path / 'chromium'}"):
            options.add_argument(flag)
        page = webdriver.Chrome(service=Service(driver), options=options)
        wait = WebDriverWait(page, 30)
        page.get(f"http://127.0.0.1:{port}/")
        upload = wait.until(lambda p: p.find_elements(By.CSS_SELECTOR, "#clip input[type=file]"))[0]
        upload.send_keys(clip)
        wait.until(lambda p: "top class" in p.find_element(By.ID, "result-0").text)

        shown = page.find_element(By.ID, "result-0").text
        top, probabilities = shown_probabilities(shown)
        assert f"top class: {top}" in shown and top == expected["predicted"]
        for c, p in probabilities.items():
            assert abs(p - expected[f"p_{c}"]) <= 1e-3, (c, p, expected[f"p_{c}"])
        assert "three clips.wav" in page.find_element(By.ID, "status").text
        facts = page.find_element(By.ID, "card-0").text
        assert "cnn3" in facts and "speaker split" in facts and "may not hold on other voices" in facts
        assert page.find_elements(By.CSS_SELECTOR, "#spectrogram img")  # the figure arrived as an image
        screenshot = tmp_path / "app.png"
        page.save_screenshot(str(screenshot))
        print(f"screenshot: {screenshot}")
        assert [p.name for p in uploads.rglob("*.wav")] == ["three clips.wav"]

        # An upload that is not audio: one line in the page, the last results cleared, no traceback
        broken = tmp_path / "broken.wav"
        broken.write_text("not audio")
        page.get(f"http://127.0.0.1:{port}/")  # a fresh page: the loaded clip replaced the file input with a player
        wait.until(lambda p: p.find_elements(By.CSS_SELECTOR, "#clip input[type=file]"))[0].send_keys(str(broken))
        wait.until(lambda p: p.find_element(By.ID, "status").text.startswith("error: broken.wav: "))
        status = page.find_element(By.ID, "status").text
        assert "\n" not in status and "Traceback" not in status and str(tmp_path) not in status
        assert page.find_element(By.ID, "result-0").text == ""  # nothing shown for it

        # An upload over --max_mb (below Gradio's own cap, 10 times more): our status line, not a bare "Error" badge
        big = tmp_path / "long.wav"
        sf.write(big, np.zeros(16000 * 50, dtype=np.float32), 16000, subtype="PCM_16")  # 1.6 MB, 50 s
        page.get(f"http://127.0.0.1:{port}/")
        wait.until(lambda p: p.find_elements(By.CSS_SELECTOR, "#clip input[type=file]"))[0].send_keys(str(big))
        wait.until(lambda p: p.find_element(By.ID, "status").text.startswith("error: long.wav: "))
        assert "larger than 1 MB" in page.find_element(By.ID, "status").text
    finally:
        if page is not None:
            page.quit()
        app.terminate()
        try:
            app.wait(timeout=15)
        except subprocess.TimeoutExpired:
            app.kill()
        log.seek(0)
        server_log = log.read()
        log.close()
    assert "Traceback" not in server_log, server_log
    assert "share=True" not in server_log and "--share for a public link" in server_log  # the flag, not Gradio's code


@pytest.mark.parametrize("folder", ["empty", "missing"])
def test_no_model_in_the_folder_is_a_one_line_error_at_start_up(tmp_path, folder):
    models = tmp_path / "models"
    if folder == "empty":
        models.mkdir()
        (models / "encoder_3_layers.pt").write_bytes(b"")  # weights without a run card are not a model to list
    proc = run_script("app.py", "--model_dir", models, "--port", free_port(), check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    what = ("no trained classifier found (no .pt with its run card .json in the folder or its subfolders)"
            if folder == "empty" else "model folder not found")
    assert proc.stderr == f"error: {models}: {what}; run make demo or train a model with train_cnn.py\n"


def test_uploads_over_the_limits_are_one_status_line(trained_cnn3, sex_data, tmp_path):
    import app

    cpu = torch.device("cpu")
    clip = long_clip(sex_data, tmp_path)  # ~6-9 s, ~200 KB
    models = app.load_models(str(trained_cnn3), cpu)
    assert [m.name for m in models] == ["cnn3_sex.pt"]  # its cnn3_sex_last.pt checkpoint is not listed
    for limits, message in (((20, 3), "s long, more than --max_seconds 3; "), ((0.01, 120), "larger than 0.01 MB; ")):
        status, figure, *per_model = app.Classifier(models, cpu, *limits, batch_size=8)(clip)
        assert status.startswith("error: three clips.wav: ") and message in status
        assert "\n" not in status and str(tmp_path) not in status  # the visitor's file name, not the server's path
        assert figure is None and per_model == [None, ""]
    status, figure, bars, text = app.Classifier(models, cpu, 20, 120, batch_size=8)(clip)
    assert "sex: " in status and set(bars) == {"Male", "Female"} and "top class: " in text and figure is not None


def test_the_spectrogram_is_shaded_by_the_model_the_visitor_picks(trained_cnn3, sex_data, tmp_path):
    import app

    folder = tmp_path / "models"
    for sub in ("", "copy/"):
        shutil.copytree(trained_cnn3, folder / sub, ignore=shutil.ignore_patterns("*_last.pt", "*.png", "*.csv"),
                        dirs_exist_ok=True)
    cpu = torch.device("cpu")
    classifier = app.Classifier(app.load_models(str(folder), cpu), cpu, 20, 120, batch_size=8)
    assert [m.name for m in classifier.models] == ["cnn3_sex.pt", "copy/cnn3_sex.pt"]
    clip = long_clip(sex_data, tmp_path)
    for shade_by, named in ((None, "cnn3_sex.pt"), ("copy/cnn3_sex.pt", "copy/cnn3_sex.pt")):
        figure = classifier(clip, shade_by)[1]
        assert figure.axes[0].get_title().startswith(f"three clips.wav: windows {named} classified")
