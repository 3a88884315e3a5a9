"""Models: MISO, the Random Forest baseline, the spectral VAE. Never touches storage."""
