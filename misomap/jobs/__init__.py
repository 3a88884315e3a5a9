"""Jobs: dask-mapped work that wires cube and models together; resumable and idempotent."""
