"""What the measurement modules share: the run, the profile, the progress line, the
results so far and the main system (4 topics), started lazily and reused."""

from __future__ import annotations

from dataclasses import dataclass, field

from benchmarks.config import Profile
from benchmarks.system import BenchRun, System
from benchmarks.util import Progress


@dataclass
class Context:
    run: BenchRun
    profile: Profile
    progress: Progress
    results: dict = field(default_factory=dict)
    _main: System | None = None
    _placement: System | None = None

    def main_system(self) -> System:
        if self._main is None:
            self._main = System(self.run, "main", topics=self.profile.e2e_topics)
        return self._main

    def placement_system(self) -> System:
        """The api alone, on topics no relay serves: trades placed here never
        reach an executor (and never become a backlog for the later sections)."""
        if self._placement is None:
            self._placement = System(self.run, "placement", topics=4)
        return self._placement

    def retire_placement_system(self) -> None:
        """Stop it, and stamp its outbox rows: left unpublished they would sit in
        the relays' partial index of the unpublished tail."""
        if self._placement is None:
            return
        self._placement.stop()
        with self.run.connect() as conn:
            conn.execute(
                "UPDATE broker_outboxevent SET published_at = now() "
                "WHERE published_at IS NULL AND topic LIKE %s",
                [self._placement.prefix + ".%"],
            )
        self._placement = None

    def stop_main_system(self) -> None:
        if self._main is not None:
            self._main.stop()
            self._main = None

    def placement_peak(self) -> tuple[float, int]:
        """(PlaceTrade/s at its best concurrency, that concurrency): from the
        placement measurement of this run, else a short estimate."""
        placement = self.results.get("placement", {})
        if placement.get("placetrade_peak_tps"):
            return (
                placement["placetrade_peak_tps"],
                placement["placetrade_peak_concurrency"],
            )
        estimate = self.results.setdefault("estimates", {})
        if "placetrade_peak_tps" not in estimate:
            from benchmarks import load

            system = self.placement_system()
            system.start_api()
            self.progress.update("estimating the placement peak (c=16, 5s)")
            try:
                result = load.closed_loop(
                    system.api_url, self.run.customers, concurrency=16, duration=5
                )
            finally:
                self.retire_placement_system()
            estimate["placetrade_peak_tps"] = round(result.throughput(), 1)
            estimate["placetrade_peak_concurrency"] = 16
            estimate["note"] = "placement not run: short closed-loop estimate"
        return estimate["placetrade_peak_tps"], estimate["placetrade_peak_concurrency"]
