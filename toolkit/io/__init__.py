"""From files to numbers: audio decoding, CREMA-D and own-label manifests, class names, speaker-independent splits,
and the torch-free log-mel spectrogram that training and the ONNX runtime share."""
