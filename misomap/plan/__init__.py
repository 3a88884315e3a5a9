"""Tile plans over Alaska: a 50 km EPSG:3338 grid, a shipped land mask, chunks and cost per stage."""
