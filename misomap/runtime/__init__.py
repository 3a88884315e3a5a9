"""The chunk engine every resumable job runs on (cube building, map prediction, spectral
embedding): a plan of frozen chunk keys, a completion record per finished chunk, skip-done, one
submission loop for threads, a local dask cluster or dask-gateway, the store's identity claim, and
one Zarr template + aligned region writer. Below models: never imports torch."""
