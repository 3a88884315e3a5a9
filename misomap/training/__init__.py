"""Training on the shared folds: a model's inputs read from the cube and the labels, the MISO
cross-validation loop and final model, encoder pretraining. Storage lives here; the networks live in
misomap.models."""
