"""Records: a line's bytes become a JSON object, then one typed, immutable record (FORMATS.md's shapes), or a
reason to quarantine it. Pure: no IO, no clock. Imports from learnd only `errors`, `values` and `config`.
"""
