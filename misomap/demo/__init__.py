"""Synthetic demo world: a physically plausible Alaska region published as STAC + COGs.

Data flows spec → terrain → climate → truth → imagery (15 m surface, skies) → scenes (UTM tiles)
→ publish (COGs, STAC, GeoParquet labels, truth, quicklook, world.json). `world.generate_world`
is the entry point; `context.context_score`
measures how much a neighbourhood adds over a pixel. The pipeline never imports this package:
it reads the world only through STAC and the label files (docs/contracts.md, section 1).
"""
