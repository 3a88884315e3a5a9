"""Evaluation: cross-validated scores, the report, model comparison and map-versus-truth."""
