"""Sessions: the exchange calendar that turns event time into trading sessions, closes and ISO weeks (the clock of
learning and of the jobs). Imports from learnd only `errors` and `config`.
"""
