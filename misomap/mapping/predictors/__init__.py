"""Map predictors: the `MapPredictor` protocol and registry, with the Random Forest and MISO
implementations.
"""
