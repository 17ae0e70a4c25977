"""How unlike the training inputs a recording is: the out-of-domain score and flag of predict.py, the API and the demo.

At the end of training (engine.fit) the penultimate embedding of the network (the input of its last Linear layer:
what the classes are read from) is taken for the training items and summarised in the run card's `domain` entry as
a mean and a shrunk (Ledoit-Wolf) covariance in probabilistic-PCA form: the top COMPONENTS principal directions with
their variances, and one variance shared by all other directions ((COMPONENTS + 1) x D numbers, whatever the width
D; no direction has a near-zero variance). A window's distance is its Mahalanobis distance under that covariance;
a recording's is the mean over its windows. The threshold is the QUANTILE of the validation items' distances: about
1 in 100 in-domain recordings is flagged `unlike_training`, and one far from every training voice is.

Only numpy at import: the ONNX backend computes the same distances without torch.
"""
from __future__ import annotations

import numpy as np

from toolkit.errors import ToolkitError

COMPONENTS = 16  # principal directions kept with their own variance
QUANTILE = 0.99  # of validation distances: the flag's threshold
MAX_TRAIN_ITEMS = 20_000  # a larger training split is summarised from a fixed random sample (enough for 16 directions)
SIGNIFICANT = 6  # digits kept in the card: the numbers stay small, and every backend reads the same rounded ones
MESSAGE = "this voice is unlike the training voices: treat the answer with caution"


def _rounded(values: np.ndarray) -> list:
    return np.vectorize(lambda v: float(f"{v:.{SIGNIFICANT}g}"), otypes=[float])(values).tolist()


def fit_domain(embeddings: np.ndarray, components: int = COMPONENTS) -> dict:
    """The card's summary of training embeddings (N, D): mean, principal directions, their variances, the rest's.

    The covariance is shrunk towards a multiple of the identity by the Ledoit-Wolf amount (a few hundred items
    cannot pin down D x D numbers: unshrunk, the directions the training items happen not to span would have
    near-zero variance and make every new voice look infinitely far)."""
    from sklearn.covariance import ledoit_wolf_shrinkage

    x = np.asarray(embeddings, np.float64)
    n, dim = x.shape
    mean = x.mean(0)
    centred = x - mean
    _, singular, directions = np.linalg.svd(centred, full_matrices=False)
    eigen = np.zeros(dim)
    eigen[: len(singular)] = singular**2 / n  # the maximum-likelihood covariance's, as Ledoit-Wolf shrinks it
    shrinkage = float(ledoit_wolf_shrinkage(centred, assume_centered=True)) if n > 1 else 1.0
    average = max(float(eigen.mean()), 1e-12)
    shrunk = (1 - shrinkage) * eigen + shrinkage * average
    k = max(1, min(components, dim, len(singular)))
    rest = float(shrunk[k:].mean()) if dim > k else average
    return {"embedding": "input of the last Linear layer", "dim": dim, "train_items": n, "shrinkage": shrinkage,
            "mean": _rounded(mean), "components": _rounded(directions[:k]), "variances": _rounded(shrunk[:k]),
            "rest_variance": float(f"{rest:.{SIGNIFICANT}g}")}


def distances(domain: dict, embeddings: np.ndarray) -> np.ndarray:
    """Mahalanobis distance of each row of `embeddings` (N, D) under the card's summary."""
    x = np.asarray(embeddings, np.float64) - np.asarray(domain["mean"], np.float64)
    directions = np.asarray(domain["components"], np.float64)
    projected = x @ directions.T
    squared = (projected**2 / np.asarray(domain["variances"], np.float64)).sum(1)
    if domain["dim"] > len(directions):
        rest = np.maximum((x**2).sum(1) - (projected**2).sum(1), 0.0)
        squared += rest / domain["rest_variance"]
    return np.sqrt(squared)


def per_owner_mean(values: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """(n, ...) means of the rows of `values` that belong to each of n owners (row i belongs to owner[i])."""
    sums = np.zeros((n, *values.shape[1:]), values.dtype)
    np.add.at(sums, owner, values)
    counts = np.maximum(np.bincount(owner, minlength=n), 1)
    return sums / counts.reshape(-1, *[1] * (values.ndim - 1)).astype(values.dtype)


def set_threshold(domain: dict, val_distances: np.ndarray, quantile: float = QUANTILE) -> dict:
    """`domain` with the flag's threshold: the `quantile` of the validation items' distances."""
    threshold = float(np.quantile(val_distances, quantile))
    return {**domain, "threshold": threshold, "quantile": quantile, "val_items": int(len(val_distances)),
            "val_median": float(np.median(val_distances))}


def check_domain(domain, source: str) -> None:
    """A one-line ToolkitError when a card's `domain` entry is not a summary this module wrote (None is fine)."""
    if domain is None:
        return
    problem = None
    try:
        dim = domain["dim"]
        mean, directions = np.asarray(domain["mean"], np.float64), np.asarray(domain["components"], np.float64)
        variances = np.asarray(domain["variances"], np.float64)
        numbers = [float(domain["rest_variance"]), float(domain["threshold"])]
        if not isinstance(dim, int) or isinstance(dim, bool) or mean.shape != (dim,) or directions.ndim != 2 \
                or directions.shape[1] != dim or variances.shape != (len(directions),) or len(directions) > dim:
            problem = "its mean, components and variances do not fit its dim"
        elif not all(np.isfinite(a).all() for a in (mean, directions, variances, numbers)) \
                or (variances <= 0).any() or numbers[0] <= 0:
            problem = "it holds non-finite or non-positive variances"
    except (TypeError, KeyError, ValueError):
        problem = "it is not a mean/components/variances/threshold summary"
    if problem:
        raise ToolkitError(f"{source}: the run card's 'domain' entry is broken ({problem}); restore the file, or "
                           f"delete the entry to predict without the out-of-domain flag")


def embedding_layer(model):
    """The network's last Linear layer: its input is the embedding the classes are read from (every registry model
    ends in one; models.replace_head finds the head the same way)."""
    from torch import nn

    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


class captured_embeddings:
    """Within it, every forward pass of `model` appends its batch's embeddings (float32 numpy) to the list it gives."""

    def __init__(self, model) -> None:
        self.layer, self.batches, self.handle = embedding_layer(model), [], None

    def __enter__(self) -> list:
        self.handle = self.layer.register_forward_hook(
            lambda module, inputs, output: self.batches.append(inputs[0].detach().float().cpu().numpy()))
        return self.batches

    def __exit__(self, *exc) -> None:
        self.handle.remove()
