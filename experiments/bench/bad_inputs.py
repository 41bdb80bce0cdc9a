"""Bad-input reliability count: runs ``tests/reliability/test_bad_inputs.py`` and tallies the cases.

    python -m experiments.bench.bad_inputs

Every test in the suite feeds one bad argument and expects a ValueError naming it, so a passed
test is a case that "raises a clear named error"; the ``test_documented_*`` tests instead expect
the bad input's documented finite answer and are counted apart. A failed test is either a case
that did not raise (a silent result, possibly NaN) or one that raised something else (e.g. an XLA error).
Hypothesis tests count as one distinct case each (they try up to 25 random inputs).
"""

from __future__ import annotations

import sys
import time

import pytest


class _Tally:
    def __init__(self):
        self.passed, self.documented, self.failed, self.skipped = [], [], [], []

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or (report.when == "setup" and not report.passed):
            if report.passed:
                bucket = self.documented if "::test_documented_" in report.nodeid else self.passed
            else:
                bucket = self.skipped if report.skipped else self.failed
            bucket.append(report.nodeid)


def main(argv=None) -> int:
    tally = _Tally()
    t0 = time.perf_counter()
    code = pytest.main(["-q", "-p", "no:cacheprovider", "tests/reliability/test_bad_inputs.py", *(argv or [])],
                       plugins=[tally])
    dt = time.perf_counter() - t0
    tried = len(tally.passed) + len(tally.documented) + len(tally.failed)
    print()
    print(f"bad-input cases tried:            {tried}")
    print(f"raise a clear, named ValueError:  {len(tally.passed)}")
    print(f"return the documented answer:     {len(tally.documented)}")
    print(f"silent results / wrong errors:    {len(tally.failed)}  (silent NaNs among the suite's cases)")
    if tally.skipped:
        print(f"skipped:                          {len(tally.skipped)}")
    for nodeid in tally.failed:
        print(f"  FAILED {nodeid}")
    print(f"pytest exit code {int(code)}, {dt:.1f} s")
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
