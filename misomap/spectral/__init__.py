"""Spectral wing: trains the spectral family on a library, scores it on LimeSoDa, embeds spectra,
stores models.
"""
