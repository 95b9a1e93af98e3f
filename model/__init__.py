"""The spherical CNN: harmonics, transforms, spectral layers, network, data, training."""
