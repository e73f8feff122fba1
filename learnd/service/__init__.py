"""service: (docstring to come)."""
