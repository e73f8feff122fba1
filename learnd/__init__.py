"""learnd: a daemon that makes a trading bot learn from every trade it makes.

The packages follow the data path, and imports run one way, down it (tests/test_architecture.py holds them to it):

    errors, values, config   the foundation: exceptions, value classes, settings
    sources                  log files -> complete lines, exactly once
    records                  lines -> typed records (pure)
    sessions                 event time -> trading sessions (the exchange calendar)
    learning                 records -> learners and models -> what was learned
    store                    one SQLite transaction per batch: offsets, ledger, learned state
    exports                  committed state -> files the bot and operators read
    jobs                     the daily and weekly jobs: when, and what they produce
    service                  the shell: engine, daemon, job runner, backfill, metrics
    views                    read-only answers for operators (never the service)
    devtools                 simulate and verify
    cli                      the command line
    client                   the reader a bot imports or copies: the standard library only, nothing of learnd
"""

import os

__version__ = "0.1.0"

# numpy's BLAS (OpenBLAS) starts a thread per core when it loads. learnd's matrices are 23x23 at most, too small
# for OpenBLAS to split across threads, so the threads only cost start-up: about a third of `import numpy`'s CPU on
# two cores, more on bigger hosts. It must be set before numpy loads; an operator's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
