"""Publishing map products as whole, versioned snapshots behind a `latest` pointer."""
