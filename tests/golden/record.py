"""Re-record the golden digests on purpose: ``python -m tests.golden.record``.

Rewrites tests/golden/golden.json from the current code. Commit the new fixture on its own,
saying which output changed and why."""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

from tests.golden.runs import FIXTURE, REPO, RUNS, run_all


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mefnet-golden-") as tmp:
        digests = run_all(Path(tmp))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    fixture = {"recorded_on": commit,
               "runs": {name: {"covers": RUNS[name][1], "files": digests[name]} for name in RUNS}}
    FIXTURE.write_text(json.dumps(fixture, indent=1, sort_keys=True) + "\n")
    print(f"{FIXTURE}: {sum(len(d) for d in digests.values())} digests of {len(digests)} runs")


if __name__ == "__main__":
    main()
