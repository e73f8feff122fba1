"""The package itself (learnd/__init__.py): what importing it sets up."""

import os
import subprocess
import sys


def _imported(environ: dict[str, str]) -> str:
    """OPENBLAS_NUM_THREADS as a fresh interpreter sees it after `import learnd`, and numpy's thread count."""
    code = (
        "import os, learnd, numpy\n"
        "threads = next(line.split()[1] for line in open('/proc/self/status') if line.startswith('Threads:'))\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'], threads)"
    )
    result = subprocess.run([sys.executable, "-c", code], env=environ, capture_output=True, text=True, check=True)
    return result.stdout.strip()


def test_importing_learnd_keeps_numpy_to_one_thread() -> None:
    environ = {key: value for key, value in os.environ.items() if key != "OPENBLAS_NUM_THREADS"}
    assert _imported(environ) == "1 1"


def test_an_operators_thread_setting_wins() -> None:
    environ = {**os.environ, "OPENBLAS_NUM_THREADS": "2"}
    assert _imported(environ).split()[0] == "2"
