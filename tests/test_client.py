"""learnd/client.py, the reader a bot imports or copies: the standard library only (run from a copy outside the
package, with site-packages off), the same answers as `learnd weights --json`, live reload, and no failure ever
reaching its caller."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

import learnd.client
from learnd.client import LearndWeights
from learnd.devtools.verify import daemon_environment
from tests.conftest import build_settings

CLIENT = Path(learnd.client.__file__)

# Run inside a bare interpreter (-I: no environment or user site, -S: no site-packages): imports the copied client,
# answers every question it is given on stdin, and lists the modules it loaded from outside the standard library.
_PROBE = """
import json, sys
sys.path.insert(0, sys.argv[1])
import learnd_client
weights = learnd_client.LearndWeights(sys.argv[2])
answers = [
    [weights.multiplier(c, r, s), weights.effective_weight(c, r, s)] for c, r, s in json.loads(sys.stdin.read())
]
foreign = sorted(
    name for name in sys.modules
    if name.split(".")[0] not in sys.stdlib_module_names and name not in ("__main__", "learnd_client")
)
print(json.dumps({"answers": answers, "foreign_modules": foreign, "status": weights.status}))
"""


def copied_client(tmp_path: Path) -> Path:
    """The client copied out of the package, as a bot's author would copy it."""
    folder = tmp_path / "bot"
    folder.mkdir()
    shutil.copy(CLIENT, folder / "learnd_client.py")
    return folder


def ask_copy(folder: Path, weights_path: Path, questions: list[tuple[str, str | None, str | None]]) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", _PROBE, str(folder), str(weights_path)],
        input=orjson.dumps(questions),
        capture_output=True,
        check=True,
        timeout=60,
        cwd=folder,
    )
    answered: dict[str, Any] = orjson.loads(result.stdout)
    return answered


def test_the_client_runs_on_the_standard_library_alone(tmp_path: Path) -> None:
    """Copied out of the package and run with site-packages off, it imports and answers, loading no module from
    outside the standard library (learnd's own included)."""
    folder = copied_client(tmp_path)
    answered = ask_copy(folder, tmp_path / "missing.json", [("options_flow", None, None)])
    assert answered["foreign_modules"] == []
    assert answered["answers"] == [[1.0, None]]
    assert answered["status"] == "no_data"


def test_the_client_agrees_with_learnd_weights_json(learned_home: Path, tmp_path: Path) -> None:
    """For every strategy, component and regime of `learnd weights --json` (and no regime, a regime learnd never
    saw, another case, a short key), the copied client's multiplier and effective weight are those figures
    exactly."""
    result = subprocess.run(
        [sys.executable, "-m", "learnd", "weights", "--json"],
        env=daemon_environment(learned_home),
        capture_output=True,
        check=True,
        timeout=60,
    )
    document = orjson.loads(result.stdout)
    bases = {name: row["base_weight"] for name, row in document["bot"]["components"].items()}
    questions: list[tuple[str, str | None, str | None]] = []
    expected: list[list[float]] = []
    for strategy, view in document["strategies"].items():
        for component, entry in view["entry"].items():
            cases = [(None, entry["multiplier"]), ("neutral", entry["multiplier"])]
            cases += [(regime, regime_view["multiplier"]) for regime, regime_view in entry["by_regime"].items()]
            cases += [(regime.upper(), regime_view["multiplier"]) for regime, regime_view in entry["by_regime"].items()]
            for regime, multiplier in cases:
                questions.append((component, regime, strategy))
                expected.append([multiplier, bases[component] * multiplier])
    flow = document["strategies"]["equity"]["entry"]["options_flow"]["multiplier"]
    questions.append(("flow", None, None))
    expected.append([flow, bases["options_flow"] * flow])
    assert len(document["strategies"]) == 2 and len(questions) > 300
    answered = ask_copy(copied_client(tmp_path), build_settings(learned_home).signal_weights_path, questions)
    assert answered["status"] == "ok"
    assert answered["answers"] == expected


def learnd_file(multiplier: float) -> bytes:
    """A minimal document in learnd's layout (what the client reads of it)."""
    return orjson.dumps(
        {
            "entry_weights": {"base_weights": {"dark_pool": 1.3}},
            "learned_multipliers": {"equity": {"*": {"dark_pool": multiplier}, "risk_on": {"dark_pool": 2.0}}},
            "component_aliases": {"darkpool": "dark_pool"},
            "learnd": {"trades_learned": 7},
        }
    )


def replace_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(path.name + ".tmp")
    temp.write_bytes(data)
    os.replace(temp, path)


def test_the_client_reloads_when_the_file_changes(tmp_path: Path) -> None:
    """A new file (renamed into place, as learnd writes) and an in-place rewrite are both picked up on the next
    call; a regime learnd never saw reads the strategy-wide figure."""
    path = tmp_path / "signal_weights.json"
    path.write_bytes(learnd_file(1.2))
    weights = LearndWeights(path)
    assert weights.multiplier("darkpool", "NEUTRAL") == 1.2
    assert weights.multiplier("dark_pool", "RISK_ON") == 2.0
    assert weights.effective_weight("dark_pool") == pytest.approx(1.3 * 1.2)
    replace_atomically(path, learnd_file(1.5))
    assert weights.multiplier("dark_pool") == 1.5
    with open(path, "r+b") as handle:
        handle.truncate(0)
        handle.write(learnd_file(0.75) + b" " * 40)
    assert weights.multiplier("dark_pool") == 0.75
    assert (weights.status, weights.last_error, weights.trades_learned) == ("ok", None, 7)


@pytest.mark.parametrize(
    "bad",
    [
        b'{"entry_weights": {"base_weights": {"dark_pool": 1.3}}, "learned_',  # half-written by a non-atomic writer
        b'{"entry_weights": {"base_weights": {"dark_pool": 1.3}}, "exit_model": {}}',  # the bot's optimizer's save
        b"\xff\xfe not text",
        b"[" * 100_000,  # deeper than the JSON parser goes
        b'{"learned_multipliers": {"equity": {"*": {"dark_pool": "high"}}}, "entry_weights": {"base_weights": {}}}',
    ],
    ids=["half_written", "optimizer_save", "not_utf8", "too_deep", "wrong_types"],
)
def test_a_file_it_cannot_use_keeps_the_last_good_copy_and_says_so(
    tmp_path: Path, bad: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Whatever replaces the file, the caller gets the last good answers, never an exception: status says stale,
    last_error why, one warning is logged (not one per call), and a good file is taken up again."""
    path = tmp_path / "signal_weights.json"
    path.write_bytes(learnd_file(1.4))
    weights = LearndWeights(path)
    assert weights.multiplier("dark_pool") == 1.4
    replace_atomically(path, bad)
    with caplog.at_level(logging.WARNING, logger="learnd.client"):
        for _ in range(3):
            assert weights.multiplier("dark_pool") == 1.4
            assert weights.effective_weight("dark_pool") == pytest.approx(1.3 * 1.4)
    assert weights.status == "stale"
    assert weights.last_error is not None and str(path) in weights.last_error
    assert len(caplog.records) == 1 and "keeping the last good copy" in caplog.records[0].getMessage()
    replace_atomically(path, learnd_file(0.9))
    assert weights.multiplier("dark_pool") == 0.9
    assert weights.status == "ok"


def test_before_any_good_copy_the_answers_are_the_bots_defaults(tmp_path: Path) -> None:
    """A missing file: multipliers 1.0, effective weights the base weights the bot passed (None for others), and
    no argument makes a call raise."""
    weights = LearndWeights(tmp_path / "absent.json", default_base_weights={"dark_pool": 1.3})
    assert weights.multiplier("dark_pool", "mixed") == 1.0
    assert weights.effective_weight("dark_pool") == 1.3
    assert weights.effective_weight("no_such_component") is None
    assert weights.multiplier(None, ["odd"], {"strategy": 1}) == 1.0  # type: ignore[arg-type]
    assert weights.status == "no_data"
    assert weights.last_error is not None
