"""Launching real ``torchrun`` (torch.distributed.run) jobs from tests.

A fixed loopback address and a free port (static rendezvous) instead of ``--standalone``: under a
loaded pytest run we saw ``--standalone`` hand its workers MASTER_PORT=0 and hang in the store.
"""

from __future__ import annotations

import socket
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_cmd(nproc: int) -> list[str]:
    """``python -m torch.distributed.run`` with a static rendezvous on 127.0.0.1:<free port>."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
    ]  # fmt: skip
