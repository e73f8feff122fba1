"""A reader of learnd's weights file for bots that can change: the standard library only, so a bot imports it or
copies this one file. It answers, from learnd's full model (per strategy and regime), the multiplier and the
effective weight of a component, reloads the file when it changes, and never fails its caller.

    from learnd_client import LearndWeights      # or: from learnd.client import LearndWeights

    weights = LearndWeights("/srv/bot/state/signal_weights.json")
    weight = weights.effective_weight("flow", regime="low_vol_uptrend", strategy="equity")

Every call looks at the file (a stat: inode, size, modification time) and reads it again when it changed. A file
it cannot use (missing, half-written by another writer, not learnd's layout) never reaches the caller: the last good
copy keeps answering, `status` says so ("stale"), `last_error` says why, and a warning is logged once per failure.
Before any good copy (`status` "no_data"), multipliers are 1.0 and effective weights the `default_base_weights`
the bot passed (None for a component it did not name).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("learnd.client")

DEFAULT_STRATEGY = "equity"
# learnd's key for the strategy-wide figures, beside the regime labels.
STRATEGY_WIDE = "*"


class LearndWeights:
    """learnd's weights file, read on demand. Thread-safe; no call raises (see the module docstring)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        default_strategy: str = DEFAULT_STRATEGY,
        default_base_weights: Mapping[str, float] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.default_strategy = default_strategy
        # "ok": answers come from the file as it is; "stale": from the last good copy, the file changed since and
        # could not be used; "no_data": no good copy yet, every answer is the bot's default.
        self.status = "no_data"
        self.last_error: str | None = None
        self.trades_learned = 0
        self._multipliers: dict[str, dict[str, dict[str, float]]] = {}
        self._base_weights: dict[str, float] = dict(default_base_weights or {})
        self._aliases: dict[str, str] = {}
        self._seen: tuple[int, int, int, int] | None = None
        self._lock = threading.Lock()

    def multiplier(self, component: str, regime: str | None = None, strategy: str | None = None) -> float:
        """The multiplier learnd learned for `component` (canonical name or a logged short key) in `regime` (any case;
        None or a regime learnd has not learned: the strategy-wide figure) of `strategy` (default: equity). 1.0 for
        a component or strategy learnd has learned nothing about."""
        self._refresh()
        by_scope = self._multipliers.get(self.default_strategy if strategy is None else str(strategy))
        if by_scope is None:
            return 1.0
        name = self._canonical(component)
        scope = _regime_scope(regime)
        if scope is not None and scope in by_scope:
            return by_scope[scope].get(name, 1.0)
        return by_scope.get(STRATEGY_WIDE, {}).get(name, 1.0)

    def effective_weight(self, component: str, regime: str | None = None, strategy: str | None = None) -> float | None:
        """Base weight x multiplier: the weight to score `component` with. None for a name that is no component."""
        base = self.base_weight(component)
        return None if base is None else base * self.multiplier(component, regime, strategy)

    def base_weight(self, component: str) -> float | None:
        """The component's base weight as the file gives it (the bot's default before a good copy)."""
        self._refresh()
        return self._base_weights.get(self._canonical(component))

    def _canonical(self, component: object) -> str:
        name = str(component)
        return self._aliases.get(name, name)

    def _refresh(self) -> None:
        with self._lock:
            try:
                stat = os.stat(self.path)
            except OSError as error:
                self._fail(f"cannot stat {self.path}: {error}", None)
                return
            seen = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
            if seen == self._seen:
                return
            try:
                with open(self.path, "rb") as handle:
                    document = json.loads(handle.read())
                loaded = _parse(document)
            except (OSError, ValueError, RecursionError) as error:
                # ValueError covers bad UTF-8, bad JSON and a layout that is not learnd's (see _parse);
                # RecursionError a document nested deeper than the parser goes.
                self._fail(f"cannot use {self.path}: {error}", seen)
                return
            self._multipliers, self._base_weights, self._aliases, self.trades_learned = loaded
            self._seen = seen
            self.status = "ok"
            self.last_error = None

    def _fail(self, error: str, seen: tuple[int, int, int, int] | None) -> None:
        # The same failure on every call is logged once; `seen` stops re-reading a file known to be unusable.
        if error != self.last_error:
            state = "keeping the last good copy" if self._multipliers else "answering the bot's defaults"
            log.warning("learnd weights: %s; %s", error, state)
        self.last_error = error
        self.status = "stale" if self._multipliers else "no_data"
        self._seen = seen


def _regime_scope(regime: str | None) -> str | None:
    """The key learnd keeps a regime under: the label case-folded, renamed when it would read as one of learnd's
    own keys (`*`, `ticker:...`)."""
    if regime is None:
        return None
    label = str(regime).casefold()
    if label == STRATEGY_WIDE or label.startswith("ticker:"):
        return f"regime:{label}"
    return label


def _parse(
    document: Any,
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, float], dict[str, str], int]:
    """What the client needs from learnd's export, checked; ValueError when the document is not learnd's layout
    (another writer may have replaced it with one that lacks learnd's full model)."""
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    learned = document.get("learned_multipliers")
    if not isinstance(learned, dict):
        raise ValueError("no learned_multipliers: not learnd's export, or rewritten by another writer")
    multipliers: dict[str, dict[str, dict[str, float]]] = {}
    for strategy, by_scope in learned.items():
        if not isinstance(by_scope, dict):
            raise ValueError(f"learned_multipliers.{strategy} is not an object")
        multipliers[strategy] = {}
        for scope, values in by_scope.items():
            if not isinstance(values, dict) or not all(_is_number(value) for value in values.values()):
                raise ValueError(f"learned_multipliers.{strategy}.{scope} is not an object of numbers")
            multipliers[strategy][scope] = {name: float(value) for name, value in values.items()}
    entry = document.get("entry_weights")
    bases = entry.get("base_weights") if isinstance(entry, dict) else None
    if not isinstance(bases, dict) or not all(_is_number(value) for value in bases.values()):
        raise ValueError("entry_weights.base_weights is missing or not an object of numbers")
    aliases = document.get("component_aliases", {})
    if not isinstance(aliases, dict) or not all(isinstance(value, str) for value in aliases.values()):
        raise ValueError("component_aliases is not an object of names")
    meta = document.get("learnd")
    trades = meta.get("trades_learned") if isinstance(meta, dict) else None
    count = trades if isinstance(trades, int) and not isinstance(trades, bool) else 0
    return multipliers, {name: float(value) for name, value in bases.items()}, dict(aliases), count


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
