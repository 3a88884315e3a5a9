"""The map viewer: a static page published beside every map (`<map>/viewer/`) that reads the COGs by
HTTP range requests, and `misomap view`, a loopback file server for it."""
