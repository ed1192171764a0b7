"""Spreading a file to many hosts in waves: every host with a verified copy seeds the next ones.

Round 1 copies from the repository (and hosts that already hold the file) to as many targets as
they can serve (``fanout`` each); every host that received a verified copy serves in the next
round, so N targets take about log(fanout + 1) of N rounds. A failed copy is retried from a
source the target has not tried yet, up to ``attempts`` sources.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

REPOSITORY = "repository"

# (source, target): copy and verify, raise on failure
Transfer = Callable[[str, str], None]
# (host, event, detail): "copying" (detail: source, round), "retry" / "failed" (detail: error), "copied"
Events = Callable[[str, str, str], None]


@dataclass
class Outcome:
    """What happened to one target."""

    host: str
    status: str  # copied | failed
    source: str | None = None
    round: int = 0
    seconds: float = 0.0  # the successful copy, checksum included
    finished_s: float = 0.0  # since the spread started
    attempts: int = 0
    error: str = ""


def _assign(pending: list[str], sources: list[str], tried: dict[str, set[str]], fanout: int) -> list[tuple[str, str]]:
    load = dict.fromkeys(sources, 0)
    pairs = []
    for target in pending:
        candidates = [s for s in sources if load[s] < fanout and s not in tried[target]]
        if candidates:
            source = min(candidates, key=lambda s: load[s])  # stable: the repository, then hosts in order
            load[source] += 1
            pairs.append((source, target))
    return pairs


def spread(targets: Sequence[str], holders: Sequence[str], transfer: Transfer, fanout: int = 1,
           attempts: int = 3, on_event: Events | None = None) -> list[Outcome]:
    """Copy to every target in rounds; one outcome per target, in the order of ``targets``."""
    if fanout < 1 or attempts < 1:
        raise ValueError("fanout and attempts must be at least 1")
    emit = on_event or (lambda _h, _e, _d: None)
    started = time.monotonic()
    sources = [REPOSITORY, *holders]
    outcomes = {t: Outcome(t, "failed") for t in targets}
    tried: dict[str, set[str]] = {t: set() for t in targets}
    pending = list(targets)
    round_no = 0
    while pending:
        pairs = _assign(pending, sources, tried, fanout)
        if not pairs:
            for target in pending:
                outcomes[target].error = outcomes[target].error or "no source left to try"
                emit(target, "failed", outcomes[target].error)
            break
        round_no += 1

        def run(pair: tuple[str, str], round_no: int = round_no) -> tuple[str, str, float, str | None]:
            source, target = pair
            emit(target, "copying", f"from {source}, round {round_no}")
            begun = time.monotonic()
            try:
                transfer(source, target)
            except Exception as exc:  # noqa: BLE001 - any failure of one copy is retried elsewhere
                return source, target, time.monotonic() - begun, str(exc) or type(exc).__name__
            return source, target, time.monotonic() - begun, None

        with ThreadPoolExecutor(max_workers=len(pairs)) as pool:
            results = list(pool.map(run, pairs))
        for source, target, seconds, error in results:
            outcome = outcomes[target]
            outcome.attempts += 1
            tried[target].add(source)
            if error is None:
                outcome.status, outcome.source, outcome.round, outcome.seconds = "copied", source, round_no, seconds
                outcome.finished_s, outcome.error = time.monotonic() - started, ""
                pending.remove(target)
                sources.append(target)
                emit(target, "copied", f"from {source} in {seconds:.1f} s")
                continue
            outcome.error = f"from {source}: {error}"
            if outcome.attempts >= attempts:
                pending.remove(target)
                emit(target, "failed", outcome.error)
            else:
                emit(target, "retry", outcome.error)
    return [outcomes[t] for t in targets]
