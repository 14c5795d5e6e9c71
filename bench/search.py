"""The bounded search for the highest sustained rate of one variant (pure, no I/O).

Phase 1 climbs from ``start`` by ``coarse`` calls/s until the first failing
step (or ``max_rate``).  Phase 2 bisects between the highest pass and the
lowest failure until they are at most ``resolution`` apart.  The result is the
highest rate that passed.  The number of steps is bounded:
``max_rate / coarse + log2(coarse / resolution) + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RateSearch:
    start: int
    coarse: int
    resolution: int
    max_rate: int
    passed: int = 0  # highest rate that passed (0: none yet)
    failed: int | None = None  # lowest rate that failed
    tried: list[tuple[int, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0 < self.start <= self.max_rate or self.coarse <= 0 or self.resolution <= 0:
            raise ValueError(
                "need 0 < start <= max_rate, coarse > 0 and resolution > 0, not "
                f"start={self.start} max_rate={self.max_rate} coarse={self.coarse} "
                f"resolution={self.resolution}"
            )

    def next_rate(self) -> int | None:
        """The rate of the next step, or None when the search is over."""
        if self.failed is None:
            rate = self.passed + self.coarse if self.tried else self.start
            return rate if rate <= self.max_rate else None
        if self.failed - self.passed <= self.resolution:
            return None
        return (self.passed + self.failed) // 2

    def record(self, rate: int, ok: bool) -> None:
        self.tried.append((rate, ok))
        if ok:
            self.passed = max(self.passed, rate)
        elif self.failed is None or rate < self.failed:
            self.failed = rate

    @property
    def capped(self) -> bool:
        """No step failed up to ``max_rate``: the maximum is at least :attr:`passed`."""
        return self.failed is None and self.next_rate() is None
