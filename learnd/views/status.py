"""`learnd status`: what the store committed, set against the files as they are now. Read-only; reuses the store."""

from __future__ import annotations

import os
from typing import Any

from learnd.config import Settings
from learnd.exports.guard import GUARD_RECORD, file_sha256, read_record
from learnd.sources.tailer import Checkpoint
from learnd.store.database import reading
from learnd.store.lock import HomeLock

_TAIL_PROBE_BYTES = 1 << 16


def collect_status(settings: Settings) -> dict[str, Any]:
    """Per source: path, offset, size, lag_bytes, pending_bytes, partial_bytes, line counts and file state.

    lag_bytes = size - committed offset; of that, pending_bytes are complete lines not yet applied and
    partial_bytes an unterminated last line still being written.
    """
    holder = HomeLock(settings.lock_path).holder()
    checkpoints: dict[str, Checkpoint] = {}
    counts: dict[tuple[str, str, str], int] = {}
    with reading(settings.db_path, settings.lock_path) as store:
        if store is not None:
            checkpoints = store.checkpoints()
            counts = store.line_counts()
    sources: dict[str, Any] = {}
    for source in settings.sources:
        checkpoint = checkpoints.get(source.name)
        entry: dict[str, Any] = {"path": str(source.path), "kind": source.kind}
        try:
            stat = os.stat(source.path)
        except FileNotFoundError:
            stat = None
        offset = checkpoint.offset if checkpoint else 0
        if stat is None:
            entry.update(state="waiting_for_file", size=0, offset=offset, lag_bytes=0, pending_bytes=0, partial_bytes=0)
        else:
            same_file = checkpoint is not None and (checkpoint.dev, checkpoint.ino) == (stat.st_dev, stat.st_ino)
            if checkpoint is None:
                state = "not_started"
            elif not same_file:
                state = "file_replaced"  # rotated or re-created: the daemon drains the old file, then reads this one
                offset = 0
            elif stat.st_size < offset:
                state = "truncated"
                offset = 0
            else:
                state = "following"
            partial = _partial_tail(source.path, stat.st_size, offset)
            lag = max(0, stat.st_size - offset)
            entry.update(
                state=state,
                size=stat.st_size,
                offset=offset,
                lag_bytes=lag,
                pending_bytes=max(0, lag - partial),
                partial_bytes=partial,
            )
        per_outcome: dict[str, int] = {}
        for (name, outcome, _), count in counts.items():
            if name == source.name:
                per_outcome[outcome] = per_outcome.get(outcome, 0) + count
        entry.update(
            lines_applied=per_outcome.get("applied", 0),
            lines_quarantined=per_outcome.get("quarantined", 0),
            lines_duplicate=per_outcome.get("duplicate", 0),
            lines_ignored=per_outcome.get("ignored", 0),
        )
        sources[source.name] = entry
    return {
        "home": str(settings.home),
        "daemon_running": holder is not None,
        "daemon": holder,
        "sources": sources,
        "export": export_status(settings),
    }


def export_status(settings: Settings) -> dict[str, Any]:
    """The bot's weights file: whether it holds what learnd wrote last (`is_learnds`; None before learnd wrote
    it), and the changes other writers made to it (each undone by the daemon), as the guard record keeps them."""
    path = settings.signal_weights_path
    record = read_record(settings.state_dir / GUARD_RECORD)
    if record is None or record.get("path") != str(path):
        return {"path": str(path), "is_learnds": None, "foreign_writes_count": 0, "last_foreign_write": None}
    return {
        "path": str(path),
        "is_learnds": file_sha256(path) == record["sha256"],
        "exists": path.exists(),
        "foreign_writes_count": int(record.get("foreign_writes_count", 0)),
        "last_foreign_write": record.get("last_foreign_write"),
    }


def render_status(report: dict[str, Any]) -> str:
    """A readable table of collect_status()."""
    daemon = f"running ({report['daemon']})" if report["daemon_running"] else "not running"
    lines = [f"home   {report['home']}", f"daemon {daemon}", ""]
    header = (
        f"{'source':<12} {'state':<17} {'offset':>12} {'size':>12} {'lag':>10} {'applied':>9} {'quar.':>6} {'dup.':>6}"
    )
    lines.append(header)
    for name, entry in report["sources"].items():
        lines.append(
            f"{name:<12} {entry['state']:<17} {entry['offset']:>12} {entry['size']:>12} {entry['lag_bytes']:>10} "
            f"{entry['lines_applied']:>9} {entry['lines_quarantined']:>6} {entry['lines_duplicate']:>6}"
        )
    lines += ["", _render_export(report["export"])]
    return "\n".join(lines) + "\n"


def _render_export(export: dict[str, Any]) -> str:
    states = {None: "not written by learnd yet", True: "learnd's", False: "changed since learnd wrote it"}
    state = states[export["is_learnds"]]
    if export["is_learnds"] is False and not export.get("exists", True):
        state = "missing (learnd writes it at its next export)"
    count = export["foreign_writes_count"]
    text = f"export {export['path']}: {state}; changes by other writers undone by the daemon: {count}"
    last = export["last_foreign_write"]
    if last:
        text += (
            f"\n       last {last['detected_ts']}: {last['keys_dropped_count']} keys dropped, "
            f"{last['keys_added_count']} added, {last['multipliers_moved_count']} multipliers moved"
            + ("" if last["parsed"] else " (not a JSON object)" if last["exists"] else " (file removed)")
        )
    return text


def _partial_tail(path: os.PathLike[str], size: int, offset: int) -> int:
    """Bytes after the last newline (an unterminated line still being written), looking back a bounded amount."""
    if size <= offset:
        return 0
    start = max(offset, size - _TAIL_PROBE_BYTES)
    with open(path, "rb") as handle:
        handle.seek(start)
        tail = handle.read(size - start)
    newline = tail.rfind(b"\n")
    return len(tail) if newline < 0 else len(tail) - newline - 1
