"""``edgeadapt`` under torchrun, but rank 1 kills itself (SIGKILL) at meta-iteration ``EDGEADAPT_FAULT_AT`` once.

Only on the first attempt (``TORCHELASTIC_RESTART_COUNT`` 0), and it first touches ``EDGEADAPT_FAULT_MARKER`` so a
test can tell that the fault happened: ``torchrun --max-restarts 1 ... tests/distributed_fault.py train ...``.
"""

import os
import signal
import sys
from pathlib import Path

from edgeadapt import cli
from edgeadapt.sdk.training import MetaTrainer

_step = MetaTrainer.step


def _dying_step(self: MetaTrainer) -> dict:
    if (self.world.rank == 1 and self.iteration == int(os.environ["EDGEADAPT_FAULT_AT"])
            and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") == "0"):
        Path(os.environ["EDGEADAPT_FAULT_MARKER"]).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return _step(self)


MetaTrainer.step = _dying_step

if __name__ == "__main__":
    sys.exit(cli.main())
