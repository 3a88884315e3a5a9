"""Synthetic demo world: a physically plausible Alaska region published as STAC + COGs."""
