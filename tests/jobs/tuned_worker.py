"""The real job worker with its pause after a transient error (5 s) shortened, for a test
whose injected faults make that pause most of its run time:

    python -m tests.jobs.tuned_worker SECONDS [worker args...]
"""

from __future__ import annotations

import sys

if __name__ == "__main__":
    from postman_async.jobs import runner

    assert isinstance(runner.TRANSIENT_PAUSE, float)  # the knob this shortens
    runner.TRANSIENT_PAUSE = float(sys.argv[1])
    from postman_async.jobs.worker import main

    sys.exit(main(sys.argv[2:]))
