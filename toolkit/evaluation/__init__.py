"""Scoring: metrics, per-group fairness, fusion, plots, and the out-of-domain distance."""
