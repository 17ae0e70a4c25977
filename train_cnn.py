"""Stage 3: train a CNN (cnn3, cnn9, resnet18, resnet34, vgg16, efficientnet) on the spectrogram images.

The best epoch by validation weighted F1 is saved as {model_save_path}/{model}_{category}.pt (a plain state dict)
with a JSON sidecar, and scored on the test set.
"""
from __future__ import annotations

from models import MODEL_NAMES, build_model, canonical_name
from toolkit.cli import get_args_parser, pick_device, run_main, seed_everything, split_csv
from toolkit.data import IMAGE_SIZE, load_images
from toolkit.engine import RunFiles, fit
from toolkit.labels import CLASSES, check_category


def main(argv: list[str] | None = None) -> None:
    p = get_args_parser(__doc__, epochs=30)
    p.add_argument("--model", default="cnn3", help=f"network: {', '.join(MODEL_NAMES)} (or efficientnet_b2)")
    p.add_argument("--model_save_path", default="Models/", help="folder for the state dict, JSON, metrics and plots")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false",
                   help="train torchvision models from scratch instead of from ImageNet weights")
    p.add_argument("--weights", default=None, help="ImageNet weights file for a torchvision model (offline use)")
    args = p.parse_args(argv)
    category = check_category(args.category)
    name = canonical_name(args.model)
    classes = CLASSES[category]
    device = pick_device(args.device, args.threads)
    seed_everything(args.seed)
    model = build_model(name, len(classes), pretrained=args.pretrained and name not in ("cnn3", "cnn9"), weights=args.weights)

    train, val, test = (load_images(split_csv(args, s), category, desc=s) for s in ("train", "val", "test"))
    meta = {"model": name, "category": category, "classes": classes, "image_size": list(IMAGE_SIZE),
            "spectrogram": train.spectrogram, "pretrained": bool(args.pretrained and name not in ("cnn3", "cnn9")),
            "train_csv": split_csv(args, "train"), "args": vars(args)}
    fit(model, train, val, test, classes, args, RunFiles(args.model_save_path, f"{name}_{category}"), meta, device)


if __name__ == "__main__":
    run_main(main)
