"""Training on the shared folds: a model's inputs read from the cube and the labels, the RF's and
MISO's cross-validation loops and MISO's final model, encoder pretraining. Storage lives here; the networks live in
misomap.models."""
