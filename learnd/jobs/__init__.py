"""Jobs: when the daily and weekly jobs run on the exchange calendar, and what a period produces (report documents,
suggestions), computed from the committed store. Jobs read the store and return their products; they never
write it (the engine does, see service.scheduler). Imports from learnd only `errors`, `values`, `config`,
`records`, `sessions`, `learning`, `store` and `exports`.
"""
