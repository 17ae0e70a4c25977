"""Web demo: upload or record a clip and see what the trained models in a folder make of it, in the browser.

Example:
    python3 app.py --model_dir Models/demo            # then open http://127.0.0.1:7860

Every classifier found below --model_dir (a .pt with its run card beside it; `_last.pt` checkpoints, autoencoder
files and cross-validation folds are left out) is listed with the facts of its run card. An upload goes through
exactly predict.py's path: the model's features, windows every half a window, the mean probability over the windows
and the card's calibration temperature; so the page shows the numbers predict.py prints for the same file. Below
them: the clip's log-mel spectrogram with the windows one model classified (the first; a menu picks another).

The page runs offline on this machine only (127.0.0.1, no share link, no usage statistics sent; --share asks Gradio
for a public link and needs the internet). Uploads are limited in size (--max_mb) and length (--max_seconds), each
refused with one status line, and are kept in a temporary folder that is removed when the demo stops (Gradio itself
stops an upload of more than 10 times --max_mb before it reaches the disk).
"""
from __future__ import annotations

if __name__ == "__main__":  # first, before the slow imports below: a Ctrl-C during them then ends in one line
    from toolkit.interrupts import quit_on_ctrl_c_during_startup
    quit_on_ctrl_c_during_startup()

import atexit
import html
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass

from toolkit.cli import Parser, add_device_flags, answer_help, pick_device, run_main
from toolkit.config import TrainConfig, number, positive_float, positive_int
from toolkit.errors import ToolkitError


NO_MODELS_FIX = "run make demo or train a model with train_cnn.py"
CAVEAT = ("figures are from a speaker-disjoint split of the training corpus and may not hold on other voices "
          "(other speakers, microphones, languages or recording conditions)")
IDLE = "Upload a clip or record one to classify it."
UPLOAD_CAP = 10  # Gradio's own upload limit, in --max_mb: beyond --max_mb our status line says why; beyond this, Gradio's bare "Error"


@dataclass
class DemoModel:
    """A classifier as the page shows it: its file (relative to --model_dir), network, run card and view."""

    name: str
    model: nn.Module
    card: RunCard
    view: View


def get_args_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("--model_dir", default="Models/", help="folder searched (with its subfolders) for trained models")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on; 0.0.0.0 makes the page reachable from other machines of the network")
    p.add_argument("--port", type=number(int, 1, 65535), default=7860, help="port to serve on")
    p.add_argument("--share", action="store_true", help="also ask Gradio for a public share link (needs the internet)")
    p.add_argument("--max_mb", type=number(float, 0, 100_000, above=True), default=20.0, help="largest upload accepted, in MB")
    p.add_argument("--max_seconds", type=positive_float, default=120.0, help="longest recording accepted, in seconds")
    p.add_argument("--batch_size", type=positive_int, default=TrainConfig.batch_size, help="windows per network batch")
    add_device_flags(p)
    return p


if __name__ == "__main__":
    answer_help(get_args_parser)  # --help answers before the slow imports below

import numpy as np
import pandas as pd
import torch
from torch import nn

from toolkit.evaluation.domain import MESSAGE as DOMAIN_MESSAGE
from toolkit.evaluation.plots import recording_figure
from toolkit.runcard import RunCard
from toolkit.serving.inference import (Recording, View, analyse, classify, describe, find_trained_models,
                                       spectrogram_extraction, window_marks)

from models import load_trained_model


def load_models(model_dir: str, device: torch.device) -> list[DemoModel]:
    """Every usable classifier below model_dir, by category; none at all is a one-line error that says what to do."""
    if not os.path.isdir(model_dir):
        raise ToolkitError(f"{model_dir}: model folder not found; {NO_MODELS_FIX}")
    paths, skipped = find_trained_models(model_dir)
    models = []
    for path in paths:
        try:
            model, card = load_trained_model(path, device)
        except ToolkitError as e:  # one broken model does not take the others' page down
            skipped.append(f"{path}: left out ({e})")
            continue
        models.append(DemoModel(os.path.relpath(path, model_dir), model, card, View.of(card)))
    for line in skipped:
        print(f"warning: {line}", file=sys.stderr)
    if not models:
        raise ToolkitError(f"{model_dir}: no trained classifier found (no .pt with its run card .json in the folder or "
                           f"its subfolders); {NO_MODELS_FIX}")
    return sorted(models, key=lambda m: (m.card.category, m.name))


def card_facts(m: DemoModel) -> pd.DataFrame:
    """The run card's facts a visitor needs to weigh the numbers: what the model is, what it was tested on, how well."""
    card = m.card
    test = card.metrics.get("test") or {}

    def score(key: str) -> str:
        value = test.get(key)
        return f"{value:.3f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "not recorded"

    split = card.split
    counts = "; ".join(f"{what} train/val/test {'/'.join(str(n.get(s, '?')) for s in ('train', 'val', 'test'))}"
                       for what in ("speakers", "clips") if isinstance(n := split.get(what), dict))
    rows = [
        ("model", f"{card.model} (pre-training: {card.pretraining()})"),
        ("file", m.name),
        ("category", f"{card.category}: {', '.join(card.classes)}"),
        ("feature type", f"{card.features['type']}, {m.view.window:g} s windows every {m.view.hop:g} s"),
        ("data / split", f"{split.get('kind', 'unknown')} split" + (f" ({counts})" if counts else "")),
        ("test weighted F1", score("f1")),
        ("test accuracy", score("accuracy")),
        ("calibration temperature", f"{card.temperature:g}"),
        ("caveat", CAVEAT),
    ]
    if card.domain:
        rows.append(("out-of-domain flag", f"distance from the training voices above {card.domain['threshold']:.1f} "
                                           f"(99th percentile of validation)"))
    if card.normalize == "speaker":  # one upload is one voice: its own windows are the speaker statistics
        rows.append(("speaker normalisation", "over this upload's own windows (one upload = one speaker)"))
    return pd.DataFrame(rows, columns=["run card", "value"])


def result_html(card: RunCard, probs: np.ndarray, unlike_training: bool | None = None, distance: float | None = None) -> str:
    """The top class and every probability to 3 decimals, in predict.py's printed wording (a test reads it), and the
    out-of-domain warning when the recording is unlike the model's training voices."""
    top = card.classes[int(probs.argmax())]
    text = f"<p><b>top class: {top}</b></p><p class='probabilities'>{describe(card, probs)}</p>"
    if unlike_training:
        text += (f"<p class='unlike-training'><b>{DOMAIN_MESSAGE}</b> (distance {distance:.1f} from the training "
                 f"voices; above {card.domain['threshold']:.1f}, the 99th percentile of its validation clips)</p>")
    return text


class Classifier:
    """What the page calls on each upload: the models, loaded once, and the one shared analysis of the clip."""

    def __init__(self, models: list[DemoModel], device: torch.device, max_mb: float, max_seconds: float,
                 batch_size: int) -> None:
        self.models, self.device, self.batch_size = models, device, batch_size
        self.max_mb, self.max_seconds = max_mb, max_seconds
        self.views = list(dict.fromkeys(m.view for m in models))  # models that look alike share one analysis
        self.plotted = spectrogram_extraction(self.views)  # the feature object the page draws recordings with
        for feature in dict.fromkeys([v.feature for v in self.views] + [self.plotted]):
            feature.warm_up()  # a feature setting that cannot work fails at start-up, not on the first upload

    def idle(self, status: str = IDLE) -> list:
        return [html.escape(status), None] + [None, ""] * len(self.models)

    def __call__(self, audio_path: str | None, shade_by: str | None = None) -> list:
        """status line, spectrogram (windows shaded by the model named `shade_by`, else the first), then per model
        (bars, text); a problem is one status line, never a traceback."""
        if not audio_path:
            return self.idle()
        shown = os.path.basename(audio_path)  # the visitor's file name, not the temporary folder it was put in
        try:
            if os.path.getsize(audio_path) > self.max_mb * 1e6:  # recordings bypass the upload limit
                return self.idle(f"error: {shown}: larger than {self.max_mb:g} MB; upload a shorter or compressed clip")
            recording = analyse((audio_path, self.views, self.max_seconds, self.plotted))
            if recording.error:
                return self.idle("error: " + recording.error.replace(audio_path, shown))
            return self.show(recording, shown, shade_by)
        except Exception as e:  # noqa: BLE001  (the page must stay up and say what went wrong in one line)
            print(f"warning: {audio_path}: {type(e).__name__}: {e}", file=sys.stderr)
            return self.idle(f"error: {shown}: could not be classified ({type(e).__name__}: {str(e).replace(audio_path, shown)})")

    def show(self, recording: Recording, shown: str, shade_by: str | None = None) -> list:
        outputs = []
        results = []
        for m in self.models:
            speakers = [recording.path] if m.card.normalize == "speaker" else None
            prediction = classify(m.model, m.card, m.view, [recording], self.device, self.batch_size, speakers)[0]
            probs, windows = prediction
            results.append((m, probs, windows))
            outputs += [{c: float(p) for c, p in zip(m.card.classes, probs)},
                        result_html(m.card, probs, prediction.unlike_training, prediction.distance)]
        shading, _, windows = next((r for r in results if r[0].name == shade_by), results[0])
        title = f"{shown}: windows {shading.name} classified, shaded by its prediction"
        figure = recording_figure(recording.image, self.plotted.params, title,
                                  window_marks(shading.card.classes, windows), shading.card.classes)
        status = (f"{shown}: {recording.seconds:.1f} s, " + "; ".join(describe(m.card, p) for m, p, _ in results))
        return [html.escape(status), figure] + outputs  # escaped: the file name is the visitor's, shown as text


def build_page(classifier: Classifier, model_dir: str):
    """The Blocks page: input and status on top, the spectrogram, then one section per model."""
    import gradio as gr

    with gr.Blocks(title="Speech classification demo", analytics_enabled=False,
                   delete_cache=(600, 3600)) as page:  # uploads older than an hour are deleted every 10 minutes
        gr.Markdown(f"# Speech classification demo\nModels from `{model_dir}`: "
                    + ", ".join(f"`{m.name}` ({m.card.category})" for m in classifier.models)
                    + f". Clips up to {classifier.max_mb:g} MB and {classifier.max_seconds:g} s. {CAVEAT.capitalize()}.")
        audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="clip (upload or record)",
                         elem_id="clip")
        status = gr.HTML(html.escape(IDLE), elem_id="status")
        names = [m.name for m in classifier.models]
        shade_by = gr.Dropdown(names, value=names[0], label="spectrogram: shade the windows by the prediction of",
                               visible=len(names) > 1, elem_id="shade-by")
        spectrogram = gr.Plot(label="log-mel spectrogram", format="png", elem_id="spectrogram")
        outputs = [status, spectrogram]
        for i, m in enumerate(classifier.models):
            with gr.Group():
                gr.Markdown(f"### {m.card.category}: {m.card.model} (`{m.name}`)")
                with gr.Row():
                    bars = gr.Label(label="probabilities", num_top_classes=len(m.card.classes), elem_id=f"bars-{i}")
                    text = gr.HTML("", elem_id=f"result-{i}")
                gr.Dataframe(card_facts(m), interactive=False, wrap=True, column_widths=["25%", "75%"],
                             elem_id=f"card-{i}")
            outputs += [bars, text]
        for trigger in (audio, shade_by):
            trigger.change(classifier, inputs=[audio, shade_by], outputs=outputs)
    return page


def offline_theme():
    """The default theme with the system's fonts: Gradio's own pulls its fonts from Google at page load."""
    import gradio as gr

    local = ["ui-sans-serif", "system-ui", "sans-serif"]
    return gr.themes.Default(font=local, font_mono=["ui-monospace", "monospace"])


def private_temp_dir() -> str:
    """A folder of our own for Gradio's uploads and caches, removed at exit: nothing is written anywhere else."""
    folder = tempfile.mkdtemp(prefix="speech-demo-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    device = pick_device(args.device, args.threads)
    models = load_models(args.model_dir, device)  # before Gradio's slow import: a wrong folder fails at once
    classifier = Classifier(models, device, args.max_mb, args.max_seconds, args.batch_size)
    # Set before Gradio is imported, which reads them once: no usage statistics or version check over the network.
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ.setdefault("GRADIO_TEMP_DIR", private_temp_dir())
    page = build_page(classifier, args.model_dir)
    print(f"{len(models)} model(s) from {args.model_dir}; serving on http://{args.host}:{args.port} (Ctrl-C stops"
          + ("" if args.share else "; --share for a public link") + ")", flush=True)
    try:
        page.queue(default_concurrency_limit=1).launch(  # one upload at a time: the models share the CPU/GPU
            server_name=args.host, server_port=args.port, share=args.share, max_file_size=f"{UPLOAD_CAP * args.max_mb:g}mb",
            ssr_mode=False, mcp_server=False, show_error=False, inbrowser=False, theme=offline_theme(),
            quiet=True)  # Gradio's own start-up lines advise `share=True` in code; ours above names --share
    except OSError as e:  # the port is taken, or the address is not this machine's
        raise ToolkitError(f"{args.host}:{args.port}: cannot serve there ({e}); pass another --port or --host")


if __name__ == "__main__":
    run_main(main)
