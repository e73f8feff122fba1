"""Exports: files derived from what the store committed, written atomically for the bot and operators (the bot's
weights file laid out for the unchanged bot, the guard that keeps it learnd's, journals). Imports from learnd only
`errors`, `values`, `config`, `records` and `learning` (the LearnedModel).
"""
