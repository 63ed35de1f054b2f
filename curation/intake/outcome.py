"""When an intake stage (ingest, import-pairs, the gold import) has failed, judged after it stored
its good rows and its rejects: a source that broke off part way, none of its rows kept, or more
of them rejected than `ingest.max_reject_share` allows. Exit 0 then means the input was read."""

from __future__ import annotations

from prefcurate.core.stage_report import StageFailed
from prefcurate.curation.intake.sources import SourceRow

SHARE_SETTING = "ingest.max_reject_share"


def _rows(count: int, kind: str) -> str:
    return f"{count} {kind} row" + ("" if count == 1 else "s")


class RejectTally:
    """What a failure names of a stage's row rejects, tallied as they come (an import streams them):
    the most common (field, reason), its first row and how many share it. Past MAX_KINDS different
    ones (reasons that name a row or a column each differ) new kinds are no longer told apart."""

    MAX_KINDS = 10_000

    def __init__(self) -> None:
        self._kinds: dict[tuple, list[int]] = {}  # (field, reason) -> [count, first row]

    @classmethod
    def of(cls, rejects: list[dict]) -> RejectTally:
        tally = cls()
        for reject in rejects:
            tally.add(reject)
        return tally

    def add(self, reject: dict) -> None:
        kind = (reject["field"], reject["reason"])
        seen = self._kinds.get(kind)
        if seen is not None:
            seen[0] += 1
        elif len(self._kinds) < self.MAX_KINDS:
            self._kinds[kind] = [1, reject["source_row"]]

    def example(self) -> str:
        (field, reason), (count, row) = max(self._kinds.items(), key=lambda item: item[1][0])
        where = f"row {row}" + (f", field {field!r}" if field else "")
        text = f"{where}: {reason}" + (f" ({count} rows like it)" if count > 1 else "")
        return text.replace("\r", "\\r").replace("\n", "\\n")  # the failure is one line


def check_intake(stage: str, source: str, rows_read: int, rows_kept: int, row_rejects: list[dict] | RejectTally,
                 stop: SourceRow | None, max_reject_share: float) -> None:
    """Raise StageFailed when the read went wrong as a whole; row_rejects are the rejects of whole rows."""
    tally = row_rejects if isinstance(row_rejects, RejectTally) else RejectTally.of(row_rejects)
    query = f"prefcurate query \"SELECT source_row, field, reason FROM rejects WHERE stage = '{stage}'\""
    if stop is not None:
        kept = f"the {_rows(rows_kept, 'good')} before it are stored" if rows_kept else "no row before it could be used"
        raise StageFailed(f"{source}: row {stop.row}: {stop.error}; {kept}")
    if rows_kept == 0:
        raise StageFailed(f"{source}: none of its {rows_read} rows could be used, e.g. {tally.example()}; "
                          f"the rejects are stored ({query})")
    rejected = rows_read - rows_kept
    if rejected / rows_read > max_reject_share:
        raise StageFailed(f"{source}: {rejected} of {rows_read} rows rejected ({rejected / rows_read:.0%}, above "
                          f"{SHARE_SETTING} {max_reject_share:g}), e.g. {tally.example()}; the "
                          f"{_rows(rows_kept, 'good')} and the rejects are stored ({query})")
