"""Sources: the bot's log files become complete lines, each read exactly once.

Owns tailing (rotation, truncation, rewrites, grace), file identity and rotated history, and line framing. Imports
from learnd only `errors` and `values`: it knows bytes and files, not what a line means.
"""
