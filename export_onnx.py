"""Export a trained model to a folder that runs with onnxruntime: the network (model.onnx), its run card, and every
constant its front end needs (mel filterbank and STFT window, input standardisation, calibration) as JSON and .npy.

Example:
    python3 export_onnx.py --model_dir Models/demo/ --model_file cnn3_sex.pt        # -> Models/demo/cnn3_sex_onnx/
    python3 predict.py --backend onnx --model_file Models/demo/cnn3_sex_onnx/ my_recordings/

Mel models (every CNN) then run on numpy, librosa and onnxruntime alone, without torch; vector heads (eGeMAPS,
speech-encoder states) export their network, their features are made by the toolkit as in training. A fine-tuned
wav2vec2 is not exported yet (its evaluation pools each clip in chunks). Before the folder is written, the card's
own test clips go through both paths, from the audio on (toolkit + torch, export + onnxruntime), and every logit must
agree within 1e-4; the export says so in one line, or fails in one line and writes nothing.
"""
from __future__ import annotations

import toolkit  # noqa: F401  (first: a Ctrl-C during the slow imports below then ends in one line)
import os

from toolkit.cli import Parser, answer_help, in_folder, run_main
from toolkit.config import positive_int
from toolkit.errors import ToolkitError
from toolkit.serving.inference import expand_audio_paths


def get_args_parser() -> Parser:
    p = Parser(description=__doc__)
    p.add_argument("--model_dir", default="Models/", help="folder holding the model file")
    p.add_argument("--model_file", required=True, metavar="PT",
                   help="the trained model (e.g. cnn3_sex.pt, its run card beside it); looked up in --model_dir unless it is a path")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="the export folder (default: {model}_onnx/ beside the .pt, where predict.py --backend onnx looks)")
    p.add_argument("--check_clips", type=positive_int, default=200, metavar="N",
                   help="check the export on the first N clips of the card's test split")
    p.add_argument("--check_audio", nargs="+", default=None, metavar="AUDIO",
                   help="check on these audio files or folders instead (when the test split is not on this machine)")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads of torch and onnxruntime")
    return p


if __name__ == "__main__":
    answer_help(get_args_parser)  # --help answers before the slow imports below

from models import load_trained_model
from toolkit.serving.onnx_export import TOLERANCE, export


def main(argv: list[str] | None = None) -> None:
    args = get_args_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    pt_path = in_folder(args.model_file, args.model_dir)
    out = args.out or os.path.splitext(pt_path)[0] + "_onnx"
    clips = None
    if args.check_audio:
        clips, problems = expand_audio_paths(args.check_audio)
        if problems:
            raise ToolkitError(next(iter(problems.values())))
    model, card = load_trained_model(pt_path, "cpu")
    worst, windows = export(model, card, pt_path, out, clips, args.check_clips, args.threads)
    print(f"exported {pt_path} to {out}: onnxruntime reproduces the torch logits within {TOLERANCE:g} "
          f"(largest difference {worst:.1e} over {windows} window(s) of its {'given' if clips else 'test'} clips)")


if __name__ == "__main__":
    run_main(main)
