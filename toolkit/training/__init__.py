"""Training: datasets and batches, the engine, the full-batch vector recipe, cross-validation, autoencoder and pseudo-label tasks, DDP."""
