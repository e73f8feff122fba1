# learnd: `make run` starts the daemon on a demo home, `make test` runs the tests.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= demo

.PHONY: run test check lint typecheck coverage bench torture install-service clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(DEMO)/logs/attribution.jsonl: | $(STAMP)
	$(PY) -m learnd simulate --out $(DEMO) --trades 600 --seed 7

## run: start the daemon on ./demo, a simulated bot home with history to learn from (Ctrl-C stops it).
run: $(STAMP) $(DEMO)/logs/attribution.jsonl
	$(PY) -m learnd --home $(DEMO) run --backfill

## test: the test suite (quick torture scenarios included).
test: $(STAMP)
	$(PY) -m pytest -q

lint: $(STAMP)
	$(PY) -m ruff check learnd tests bench
	$(PY) -m ruff format --check learnd tests bench

typecheck: $(STAMP)
	$(PY) -m mypy

## check: lint, types and tests.
check: lint typecheck test

## coverage: the tests under coverage.py, with branches (in-process code; the daemon subprocesses are not traced).
coverage: $(STAMP)
	$(PY) -m coverage erase
	$(PY) -m coverage run -m pytest -q
	$(PY) -m coverage report

## bench: benchmarks, figures as ratios against baselines measured in the same run.
bench: $(STAMP)
	$(PY) -m bench

## torture: the full torture suite.
torture: $(STAMP)
	$(PY) -m pytest -q -m slow tests/test_torture.py

## install-service: as root, install learnd under PREFIX and its unit for the bot home BOT_HOME, then start it.
PREFIX   ?= /opt/learnd
BOT_HOME ?= /srv/bot
UNIT_DIR ?= /etc/systemd/system
install-service:
	id -u learnd >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin learnd
	$(PYTHON) -m venv $(PREFIX)/.venv
	$(PREFIX)/.venv/bin/pip install --quiet .
# state/ and data/ are made for learnd when missing. The bot's own are never taken over (the bot reads
# state/signal_weights.json): learnd joins their group, which may then write there, new files in its name.
	for dir in $(BOT_HOME)/state $(BOT_HOME)/data; do \
		if [ -d "$$dir" ]; then usermod -a -G "$$(stat -c %G "$$dir")" learnd && chmod g+rwxs "$$dir"; \
		else install -d -o learnd -g learnd -m 0750 "$$dir"; fi || exit 1; \
	done
	sed -e 's|/opt/learnd/.venv|$(PREFIX)/.venv|g' -e 's|/srv/bot|$(BOT_HOME)|g' systemd/learnd.service \
		> $(UNIT_DIR)/learnd.service
	systemctl daemon-reload
# The logs the bot wrote so far, learned once before the daemon first starts: `run` begins a file it never read
# at its end, and only `backfill --from-scratch` learns what lay before that. (Run again on an installed service,
# the daemon owns the home and follows its files already: nothing to do.)
	systemctl is-active --quiet learnd.service \
		|| runuser -u learnd -- $(PREFIX)/.venv/bin/learnd --home $(BOT_HOME) backfill --progress none
	systemctl enable --now learnd.service
	systemctl --no-pager status learnd.service

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .mypy_cache .ruff_cache
