"""`learnd audit`: every line of every file learnd can see (current and rotated, plain and gzip) set against what
the store counted, and the components whose logged values are off the contribution scale. Read-only, like status;
reuses the store and the file layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from learnd.config import Settings, SourceSettings
from learnd.learning.trades import NAME as TRADE_LEARNER
from learnd.learning.trades import TradeLearner
from learnd.sessions.tables import calendar_for
from learnd.sources.files import HistoryError, HistoryFile, KnownFiles, census, source_files, unread_start
from learnd.sources.tailer import Checkpoint
from learnd.store.database import reading
from learnd.store.lock import HomeLock

OUTCOMES: Final = ("applied", "duplicate", "ignored", "quarantined")
REREAD: Final = "line_reread_after_rewrite"


@dataclass(frozen=True, slots=True)
class _Snapshot:
    counts: dict[tuple[str, str, str], int]
    known: dict[str, KnownFiles]
    checkpoints: dict[str, Checkpoint]
    following: dict[str, tuple[str, int] | None]


@dataclass(slots=True)
class _FileRow:
    file: HistoryFile
    read_offset: int
    lines: int = 0
    lines_read: int = 0
    pending: int = 0
    duplicate_on_disk: int = 0
    content_bytes: int = 0
    partial_bytes: int = 0
    error: str = ""  # why its content cannot be read to its end (then it counts as nothing)

    def to_dict(self) -> dict[str, Any]:
        identity = self.file.identity
        return {
            "path": str(self.file.path),
            "role": "current" if self.file.is_current else "rotated",
            "compressed": self.file.is_compressed,
            "identity": identity.fp_hash.hex() if identity is not None else None,
            "content_bytes": self.content_bytes,
            "read_offset": self.read_offset,
            "lines": self.lines,
            "lines_read": self.lines_read,
            "pending": self.pending,
            "duplicate_on_disk": self.duplicate_on_disk,
            "partial_bytes": self.partial_bytes,
            "error": self.error or None,
        }


@dataclass(slots=True)
class _NotVisible:
    """Lines the store read from content no longer on disk, known only within bounds (files keep byte offsets)."""

    files_count: int = 0
    lines_min: int = 0
    lines_max: int = 0
    identities: list[str] = field(default_factory=list)


def collect_audit(settings: Settings) -> dict[str, Any]:
    """Per source, every line accounted for: {"lines_total", "applied", "duplicate", "ignored", "quarantined",
    "pending", "unaccounted"} with breakdowns by kind and reason and one row per file.

    A line is a newline-terminated line; a rotated file's unterminated tail counts as one line too (it can only
    end up quarantined), the current file's is still being written (`partial_bytes`). Files are grouped by
    identity (first-line fingerprint, as the tailer and backfill know them): a copy of content already counted
    under its identity (copytruncate's copy, the same file compressed) adds its lines to `duplicate_on_disk`,
    not to the total. Lines read from content no longer visible (rotated copies deleted, supervisor rewrites,
    epoch resets) are `not_visible`: the store's count less what visible files account for, which the files
    table bounds (at least one line per vanished identity read, at most one per byte read). So

        lines_total = lines_on_disk - duplicate_on_disk + not_visible
        unaccounted = lines_total - (applied + duplicate + ignored + quarantined + pending)

    is 0 in a healthy home, positive when lines were read (by the offsets) but not counted, negative when the
    store counted more than the files can hold.
    """
    holder = HomeLock(settings.lock_path).holder()
    snapshot = _snapshot(settings)
    sources = {source.name: _audit_source(source, snapshot) for source in settings.sources}
    return {
        "home": str(settings.home),
        "standardized_components": _standardized_components(settings),
        "daemon_running": holder is not None,
        "daemon": holder,
        # A file whose content cannot be read (a damaged gzip copy, or one still being written) has lines no one
        # can count: the home is not healthy until it reads, or is moved away.
        "healthy": all(entry["unaccounted"] == 0 for entry in sources.values())
        and not any(row["error"] for entry in sources.values() for row in entry["files"]),
        "sources": sources,
    }


def _standardized_components(settings: Settings) -> dict[str, dict[str, float]]:
    """Per strategy, the attribution components the trade learner takes on a standardized scale: the bot logs them
    off the contribution scale (raw), and their values are learned times the factor given."""
    with reading(settings.db_path, settings.lock_path) as store:
        state = store.learner_state(TRADE_LEARNER) if store is not None else None
    if state is None:
        return {}
    entry = TradeLearner(settings.learning, calendar_for(settings), state).entry
    return {strategy: factors for strategy in entry.strategies() if (factors := entry.scale_factors(strategy))}


def _snapshot(settings: Settings) -> _Snapshot:
    with reading(settings.db_path, settings.lock_path) as store:
        if store is None:
            return _Snapshot({}, {}, {}, {})
        # One committed state: `reading` holds a read transaction, whatever the daemon commits meanwhile.
        return _Snapshot(
            counts=store.line_counts(),
            known={source.name: store.known_files(source.name) for source in settings.sources},
            checkpoints=store.checkpoints(),
            following={source.name: store.following(source.name) for source in settings.sources},
        )


def _audit_source(source: SourceSettings, snapshot: _Snapshot) -> dict[str, Any]:
    known = snapshot.known.get(source.name) or KnownFiles(following=False)
    checkpoint = snapshot.checkpoints.get(source.name)
    rows = [_count_file(found, known, checkpoint) for found in source_files(source.path)]
    not_visible = _NotVisible()
    read_visible = pending = 0
    for members in _copies_of_one_another(rows):
        # The copy holding the most lines stands for the file; the others repeat a prefix of it.
        keeper = max(members, key=lambda row: (row.lines, row.file.is_current))
        for row in members:
            if row is not keeper:
                row.duplicate_on_disk, row.lines_read, row.pending = row.lines, 0, 0
        read_visible += keeper.lines_read
        pending += keeper.pending
        if keeper.file.identity is not None and keeper.read_offset > keeper.content_bytes:
            not_visible.lines_max += keeper.read_offset - keeper.content_bytes  # read further than what is left
    visible = {identity for row in rows for identity in row.file.ladder}
    for identity, offset in sorted(known.read.items(), key=lambda item: item[0].fp_hash):
        if identity in visible or offset <= 0:
            continue
        not_visible.files_count += 1
        not_visible.lines_min += 1
        not_visible.lines_max += offset
        not_visible.identities.append(identity.fp_hash.hex())
    by_outcome: dict[str, dict[str, int]] = {outcome: {} for outcome in OUTCOMES}
    for (name, outcome, kind), count in snapshot.counts.items():
        if name == source.name:
            by_outcome.setdefault(outcome, {})[kind] = count
    totals = {outcome: sum(by_outcome[outcome].values()) for outcome in OUTCOMES}
    counted = sum(totals.values())
    # Each line re-read after a rewrite stands for a first reading of it, from a file that may be gone since (rewritten
    # in place, or renamed over by a trimmed copy that is the whole of it). So may each line of a current file not
    # read at all yet: the tailer holds a new file's first lines while they could be such a copy (a rewrite or new
    # lines, undecided), and holding them, it forgets how far their identity was read, which a file renamed over by
    # a copy of the same lines shared.
    not_visible.lines_max += by_outcome["duplicate"].get(REREAD, 0)
    if checkpoint is not None and checkpoint.offset == 0:
        not_visible.lines_max += sum(
            row.pending
            for row in rows
            if row.file.is_current and (row.file.dev, row.file.ino) == (checkpoint.dev, checkpoint.ino)
        )
    inferred = counted - read_visible
    not_visible_lines = min(max(inferred, not_visible.lines_min), not_visible.lines_max)
    lines_on_disk = sum(row.lines for row in rows)
    duplicate_on_disk = sum(row.duplicate_on_disk for row in rows)
    current = next((row.file for row in rows if row.file.is_current), None)
    needs_backfill = sum(
        row.pending
        for row in rows
        if not row.file.is_current and unread_start(row.file, known, current, history=False) is None
    )
    lines_total = lines_on_disk - duplicate_on_disk + not_visible_lines
    following = snapshot.following.get(source.name)
    return {
        "path": str(source.path),
        "following_since_us": following[1] if following is not None else None,
        "lines_total": lines_total,
        **totals,
        "pending": pending,
        "needs_backfill": needs_backfill,
        "unaccounted": lines_total - (counted + pending),
        "lines_on_disk": lines_on_disk,
        "duplicate_on_disk": duplicate_on_disk,
        "not_visible": not_visible_lines,
        "not_visible_files": not_visible.files_count,
        "not_visible_bounds": [not_visible.lines_min, not_visible.lines_max],
        "partial_bytes": sum(row.partial_bytes for row in rows),
        "applied_by_kind": dict(sorted(by_outcome["applied"].items())),
        "duplicate_by_kind": dict(sorted(by_outcome["duplicate"].items())),
        "ignored_by_kind": dict(sorted(by_outcome["ignored"].items())),
        "quarantined_by_reason": dict(sorted(by_outcome["quarantined"].items())),
        "files": [row.to_dict() for row in rows],
    }


def _copies_of_one_another(rows: list[_FileRow]) -> list[list[_FileRow]]:
    """The files grouped by content: a copy of a file (copytruncate's copy, the same file compressed) joins it."""
    groups: list[list[_FileRow]] = []
    for row in rows:
        joined = [group for group in groups if any(_are_copies(row.file, other.file) for other in group)]
        groups = [group for group in groups if all(group is not other for other in joined)]
        groups.append([row, *(member for group in joined for member in group)])
    return groups


def _are_copies(first: HistoryFile, second: HistoryFile) -> bool:
    return first.is_copy_of(second) or second.is_copy_of(first)


def _count_file(found: HistoryFile, known: KnownFiles, checkpoint: Checkpoint | None) -> _FileRow:
    position = known.position(found.ladder)
    if position is not None:
        read_offset = position[1]
    else:
        same_file = checkpoint is not None and (checkpoint.dev, checkpoint.ino) == (found.dev, found.ino)
        read_offset = checkpoint.offset if same_file and checkpoint is not None and not checkpoint.fp_len else 0
    row = _FileRow(found, read_offset, error=found.error)
    if found.error:
        return row  # counted as nothing; the row carries the error
    try:
        lines = census(found.path, read_offset)
    except HistoryError as error:  # damage past the first block (which inspect_file reads)
        row.error = str(error)
        return row
    row.content_bytes = lines.content_bytes
    row.lines_read, row.pending = lines.lines_before, lines.lines_after
    if lines.fragment_bytes and not found.is_current:
        # A rotated file's last fragment is final: one line, read once the offset passed its start.
        if read_offset > lines.fragment_start:
            row.lines_read += 1
        else:
            row.pending += 1
    elif lines.fragment_bytes:
        row.partial_bytes = lines.fragment_bytes
    row.lines = row.lines_read + row.pending
    return row


def render_audit(report: dict[str, Any]) -> str:
    """A readable account of collect_audit(): a table per source, its files, breakdowns and a verdict."""
    daemon = f"running ({report['daemon']})" if report["daemon_running"] else "not running"
    out = [f"home   {report['home']}", f"daemon {daemon}", ""]
    header = (
        f"{'source':<12} {'lines':>9} {'applied':>9} {'dup.':>7} {'ignored':>9} {'quar.':>6} {'pending':>8} "
        f"{'unacc.':>7}"
    )
    out.append(header)
    for name, entry in report["sources"].items():
        out.append(
            f"{name:<12} {entry['lines_total']:>9} {entry['applied']:>9} {entry['duplicate']:>7} "
            f"{entry['ignored']:>9} {entry['quarantined']:>6} {entry['pending']:>8} {entry['unaccounted']:>7}"
        )
    for name, entry in report["sources"].items():
        out += ["", f"{name}: {entry['path']}"]
        for row in entry["files"]:
            flags = " gzip" if row["compressed"] else ""
            copy = f", {row['duplicate_on_disk']} repeat a copy counted once" if row["duplicate_on_disk"] else ""
            error = f", UNREADABLE: {row['error']}" if row["error"] else ""
            out.append(
                f"  {row['role']:<8}{flags:<5} {row['path']}: {row['lines']} lines, {row['lines_read']} read, "
                f"{row['pending']} pending{copy}{error}"
            )
        if entry["not_visible"] or entry["not_visible_files"]:
            low, high = entry["not_visible_bounds"]
            out.append(
                f"  not visible: {entry['not_visible']} lines read from {entry['not_visible_files']} files no longer "
                f"on disk (rotated away, rewritten or reset; the files table allows {low}..{high})"
            )
        for label, key in (
            ("ignored by kind", "ignored_by_kind"),
            ("duplicate by kind", "duplicate_by_kind"),
            ("quarantined by reason", "quarantined_by_reason"),
        ):
            if entry[key]:
                out.append(f"  {label}: " + ", ".join(f"{kind} {count}" for kind, count in entry[key].items()))
        if entry["partial_bytes"]:
            out.append(f"  {entry['partial_bytes']} bytes of a line still being written (not counted yet)")
        if entry["needs_backfill"]:
            out.append(
                f"  {entry['needs_backfill']} pending lines are in rotated copies the daemon does not read: "
                "`learnd backfill` applies them"
            )
    for strategy, factors in report.get("standardized_components", {}).items():
        listed = ", ".join(f"{name} x {factor:.4g}" for name, factor in factors.items())
        out += ["", f"off the contribution scale (strategy {strategy}), learned standardized: {listed}"]
    out.append("")
    wrong = {name: entry["unaccounted"] for name, entry in report["sources"].items() if entry["unaccounted"]}
    unreadable = [row["path"] for entry in report["sources"].values() for row in entry["files"] if row["error"]]
    if unreadable:
        out.append(
            f"verdict: UNREADABLE files ({', '.join(unreadable)}): their lines cannot be counted (a damaged gzip "
            "copy, or one still being written); each counts as no line"
        )
    if not wrong and not unreadable:
        out.append("verdict: every line accounted for")
    elif wrong:
        detail = ", ".join(f"{name} {count:+d}" for name, count in wrong.items())
        out.append(
            f"verdict: UNACCOUNTED lines ({detail}); positive: read by the offsets but never counted (a plain `run` "
            "begins a file it never read at its end: `learnd backfill --from-scratch` learns the lines before it), "
            "negative: counted more often than the files hold"
        )
    return "\n".join(out) + "\n"
