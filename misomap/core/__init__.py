"""Foundations every part of misomap stands on: the storage door, errors, logging, shared names."""
