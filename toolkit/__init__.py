"""Shared code for the stage scripts: audio/mel, labels, splits, datasets, training loop, metrics, plots, CLI."""
