"""Labels: pedon files, the training table sampled from the cube, and spatial folds (with validation
carving).
"""
