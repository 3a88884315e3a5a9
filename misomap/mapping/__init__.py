"""Mapping: the map section, layers, the map Zarr store, the per-chunk task, exports (COG/STAC) and
predictors.
"""
