"""`python -m learnd`: the command line (see learnd/cli.py)."""

from learnd.cli import program

program()
