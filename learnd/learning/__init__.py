"""learning: (docstring to come)."""
