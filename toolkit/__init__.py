"""Shared code for the stage scripts: audio and features, labels, splits, datasets, training loop, metrics, plots, CLI.

Importing it has no side effects; each stage script installs its Ctrl-C handling itself (toolkit/interrupts.py).
"""
