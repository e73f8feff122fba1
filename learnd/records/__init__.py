"""records: (docstring to come)."""
