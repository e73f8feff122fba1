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

__version__ = "0.1.0"
