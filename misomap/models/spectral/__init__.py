"""Spectral models: the MIR VAE, the NIR encoder into its latent space, regressors and metrics.

No storage here: jobs read arrays and bytes and pass them in.
"""
