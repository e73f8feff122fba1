"""sources: (docstring to come)."""
