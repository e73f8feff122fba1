"""Learning: records feed learners. The models (entry regression, exit tallies), the learners that drive them in
event order (trades, signal episodes, execution quality), the learner Protocol the shell calls, the statistics
and the prequential evaluation. The models and statistics are pure. Imports from learnd only `errors`, `values`,
`config`, `records` and `sessions`; never the store or anything above it.
"""
