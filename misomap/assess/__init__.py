"""Design-based accuracy and area of a map from a labelled probability sample: sampling designs,
the stratified estimators of Olofsson et al. (2014) and Stehman (2014), and their report."""
