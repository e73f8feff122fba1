"""Views: what an operator asks of a home (status, audit, weights, evaluation, signals, execution, schedule,
charts). Read-only: they open the store through store.database.reading and never import the service (no
engine, no lock taken, no daemon needed). Imports from learnd only `errors`, `values`, `config`, `sources`,
`records`, `sessions`, `learning`, `store`, `exports` and `jobs`.
"""
