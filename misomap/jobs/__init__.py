"""Jobs: one thin file per CLI verb; each reads the whole run configuration and hands every room
its own section."""
