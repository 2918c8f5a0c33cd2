"""Transports run a `Command` somewhere and return its `CommandResult`.

- `SubprocessTransport`: on this machine, with the real Slurm commands (e.g. Airflow on a login node).
- `LocalTransport`: on this machine with no Slurm at all; Slurm commands go to the emulator in
  `dc2tasks.slurm.localslurm` (the embedded default behind `make demo`).
- `SSHTransport`: on a login node over one shared SSH connection (asyncssh).
"""

from dc2tasks.slurm.transports.base import TransportError, TransportTimeout
from dc2tasks.slurm.transports.local import LocalTransport, SubprocessTransport

__all__ = ["LocalTransport", "SubprocessTransport", "TransportError", "TransportTimeout"]
