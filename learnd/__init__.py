"""learnd: a daemon that makes a trading bot learn from every trade it makes."""

__version__ = "0.1.0"
