"""views: (docstring to come)."""
