"""devtools: (docstring to come)."""
