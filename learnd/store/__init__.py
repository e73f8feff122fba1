"""The store: state/learnd.db (SQLite, WAL), the one source of truth for offsets, the line window, the ledger and
learned state, committed in one transaction per batch; the home lock; store generations; the ledger read back as
records; the one read-only way in for views. Imports from learnd only `errors`, `values`, `config`, `sources`
(the Checkpoint it persists) and `records`.
"""
