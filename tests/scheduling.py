"""How pytest-xdist hands out the suite's tests (`--dist loadfile`): longest work first.

A unit of work is a module, or for a module whose tests run under each live server
(the `server_kind` fixture), the module's tests under one server: those share their
module-wide servers, which are started per server kind anyway, so two workers can take the
two halves at no extra cost. A worker that is almost done gets the unit expected to take
longest of those left (longest processing time first), so that no long module starts last
and runs alone at the end. The expected seconds come from `tests/durations.json`
(`pytest -n 4 --dist loadfile --record-durations` rewrites it); a unit it lacks counts
0.1 s a test.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from xdist.scheduler import LoadScopeScheduling

from tests.live import TEST_SERVERS

DURATIONS = Path(__file__).with_name("durations.json")
#: Seconds a test counts for when its unit is not in `DURATIONS`.
UNKNOWN_TEST_SECONDS = 0.1


def unit_of(nodeid: str) -> str:
    """The unit of work of test `nodeid`: its module, plus the server kind in its id."""
    module = nodeid.split("::", 1)[0]
    _, bracket, ids = nodeid.partition("[")
    if bracket:
        for part in ids.rstrip("]").split("-"):
            if part in TEST_SERVERS:
                return f"{module}[{part}]"
    return module


def load_durations() -> dict[str, float]:
    try:
        return {str(k): float(v) for k, v in json.loads(DURATIONS.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


class LongestFirstScheduling(LoadScopeScheduling):
    """`LoadScopeScheduling` over `unit_of`'s units, the longest expected unit first."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.expected = load_durations()

    def _split_scope(self, nodeid: str) -> str:
        return unit_of(nodeid)

    def _expected_seconds(self, unit: str) -> float:
        known = self.expected.get(unit)
        if known is not None:
            return known
        return UNKNOWN_TEST_SECONDS * len(self.workqueue[unit])

    def _assign_work_unit(self, node) -> None:
        longest = max(self.workqueue, key=self._expected_seconds)
        self.workqueue.move_to_end(longest, last=False)
        super()._assign_work_unit(node)


class DurationRecorder:
    """Sums each unit's test durations (setup, call, teardown) and writes them to
    `DURATIONS` at the end, keeping the units this run did not run."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def pytest_runtest_logreport(self, report) -> None:
        self.seconds[unit_of(report.nodeid)] += report.duration

    def pytest_sessionfinish(self) -> None:
        merged = {**load_durations(), **{k: round(v, 1) for k, v in self.seconds.items()}}
        DURATIONS.write_text(json.dumps(dict(sorted(merged.items())), indent=0) + "\n")
