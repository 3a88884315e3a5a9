"""Shared ground floor: typed errors, logging, class names, base config models. Imports no other
misomap package.
"""
