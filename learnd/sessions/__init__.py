"""sessions: (docstring to come)."""
