"""Datacube building: STAC search, stacking, compositing, Zarr writing. Knows nothing of torch."""
