"""Devtools: a simulated bot home with planted edges (`simulate`) and the end-to-end self check (`verify`), which
drives the real daemon in subprocesses. Imports from learnd anything but the cli: `errors`, `values`, `config`,
`sources`, `records`, `sessions`, `learning`, `store`, `exports`, `jobs`, `service` and `views`.
"""
