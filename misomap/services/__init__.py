"""Local real services (S3, STAC API, dask-gateway) started on loopback for tests and the demo."""
