"""The models' own hyperparameters (ModelSpec.args), as frozen dataclasses: a field is train_cnn.py's flag of the
same name (type and help in its metadata) and a key of the run card's model_args. Apart from the networks, which
need torch, so that the registry reads them without importing torch (train_cnn.py --help).

A field added after run cards were written names in its metadata, as "absent", the value their models were trained
with: a card that lacks the field rebuilds the model it describes (models.model_args_of), whatever today's default."""
from __future__ import annotations

from dataclasses import dataclass, field

from toolkit.config import number

DROPOUT = 0.2


@dataclass(frozen=True)
class MLPArgs:
    """The mlp's own hyperparameters: train_cnn.py's flags of the same names, the run card's model_args."""
    hidden: int = field(default=256, metadata={"type": number(int, 1, 65536), "help": "width of each hidden layer (mlp, frame_mlp)"})
    layers: int = field(default=1, metadata={"type": number(int, 1, 64), "help": "number of hidden layers (mlp, frame_mlp)"})
    dropout: float = field(default=DROPOUT, metadata={"type": number(float, 0, 1, below=True),
                                                      "help": "dropout after each hidden layer (mlp, frame_mlp)"})


@dataclass(frozen=True)
class FrameArgs(MLPArgs):
    """frame_mlp's: the same MLP, run on every frame, with two hidden layers (one was worse on voices never heard:
    experiments/RESULTS.md, "Voices never heard, round 6")."""
    layers: int = field(default=2, metadata=MLPArgs.__dataclass_fields__["layers"].metadata)
    # 5: the worst voices never heard read far better at level totals, over three seeds (experiments/RESULTS.md, round 9);
    # cards written before the flag trained unbounded ("absent")
    vote_bound: float = field(default=5.0, metadata={
        "type": number(float, 0, 1000), "absent": 0.0,
        "help": "frame_mlp: each frame's logits bounded to +-B (B tanh(logit / B)) before the clip's mean, so that a "
                "few frames cannot outvote the rest; 0: unbounded"})
    # 4: the accented voices never heard read far better, over three seeds (experiments/RESULTS.md, round 10); cards
    # written before the flag read the whole frame with one MLP ("absent")
    bands: int = field(default=4, metadata={
        "type": number(int, 1, 16), "absent": 1,
        "help": "frame_mlp: K sub-band experts, each with its own hidden layers on one of K half-overlapping bands of "
                "the frame's rows; a frame's vote is the sum of their bounded votes; 1: one MLP on the whole frame"})
