"""Notebook-style examples of the Python API (each runs top to bottom, and in a test)."""
