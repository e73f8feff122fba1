"""The service: the imperative shell that runs it all. The engine (a home opened for writing: lock, store,
learners, ingest pipeline, exports), the asyncio daemon, the job runner, backfill and from-scratch rebuilds,
sd_notify, metrics, logging, handing freed memory back after a burst, and the short account of what was learned.
Imports from learnd `errors`, `values`, `config`, `sources`, `records`, `sessions`, `learning`, `store`, `exports`
and `jobs`; nothing but devtools and the cli imports it.
"""
