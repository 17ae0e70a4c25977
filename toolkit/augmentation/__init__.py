"""Augmentation: SpecAugment/mixup on images, waveform transforms, and augmented copies written to disk."""
