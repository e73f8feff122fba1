"""jobs: (docstring to come)."""
