"""The latent space: sampling at a temperature, interpolation, and attribute directions."""
