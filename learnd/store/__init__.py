"""store: (docstring to come)."""
