"""exports: (docstring to come)."""
