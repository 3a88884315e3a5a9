"""Soil spectral libraries: the Zarr library format, readers, a synthetic generator and preprocessing.

Knows nothing of torch: models live in misomap.models.spectral, wiring in misomap.spectral.
"""
