"""The names of stage 4a's files (the seed's), which stages 4b and 4c read: apart from the autoencoder's torch code
(autoencoding.py) so that the stages' --help names them without importing torch."""

ENCODER_FILE = "encoder_3_layers.pt"  # the seed's file names, loaded by cnn_classifier.py
DECODER_FILE = "decoder_3_layers.pt"
STEM = "autoencoder_3_layers"  # {STEM}.json (its run card: the final loss), _metrics.csv, _loss_curve.png, _reconstructions.png
