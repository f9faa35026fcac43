"""Execute one notebook with papermill, with two guards against the ways papermill hangs here.

1. Kernels talk over Unix sockets in a folder of their own, not TCP ports. jupyter_client picks TCP
   ports by binding free ones and releasing them before the kernel binds them, so two kernels
   started at once can be handed the same ports (nteract/papermill#511).
2. The client re-checks its sockets every second instead of sleeping until the event loop says a
   message arrived. Under CPU load the zmq.asyncio wake-up is sometimes missed (pyzmq#2173
   describes the mechanism): the kernel has replied and sits idle, the client waits forever.
   Measured on a 2-core machine, running the fixture notebooks of tests/ 15-20 times while a
   matrix-multiply loop kept both cores busy: 4 of 15 runs hung with the plain client, 0 of 40
   with this one (pyzmq 27.3, ipykernel 7.4).

run_notebooks.py calls this once per notebook, in its own process. A cell that runs past
``--execution-timeout`` ends it with exit status 124 (as coreutils' ``timeout``), so the runner can
say so instead of showing the KeyboardInterrupt the timeout raised in the kernel. SIGTERM shuts the
kernel down and removes its socket folder, as Ctrl-C does.

    python ci/execute_notebook.py IN.ipynb OUT.ipynb --cwd DIR --parameters '{"epochs": 2}'
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from queue import Empty
from typing import Any

import papermill
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.channels import AsyncZMQSocketChannel
from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError
from traitlets import CaselessStrEnum, Type, default

POLL_SLICE_S = 1.0  # how long a missed wake-up can delay a message
TIMED_OUT = 124


class PatientChannel(AsyncZMQSocketChannel):
    """A channel whose ``get_msg`` polls in slices of ``POLL_SLICE_S``: at the end of each slice
    pyzmq checks the socket itself, so a message whose wake-up was lost is read a second late
    instead of never."""

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = POLL_SLICE_S if deadline is None else max(0.0, min(POLL_SLICE_S, deadline - time.monotonic()))
            if await self.socket.poll(int(left * 1000)):
                return await self._recv()
            if deadline is not None and time.monotonic() >= deadline:
                raise Empty


class PatientKernelClient(AsyncKernelClient):
    shell_channel_class = Type(PatientChannel)
    iopub_channel_class = Type(PatientChannel)
    stdin_channel_class = Type(PatientChannel)
    control_channel_class = Type(PatientChannel)


def ipc_kernel_manager(socket_dir: Path) -> type[AsyncKernelManager]:
    """A kernel manager whose sockets are files ``socket_dir/kernel-1`` … ``kernel-5`` and whose
    client is a ``PatientKernelClient``."""

    class IpcKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("client_factory")
        def _client_factory_default(self) -> type:
            return PatientKernelClient

        @default("ip")
        def _ip_default(self) -> str:
            # Without this jupyter_client puts the sockets in the working directory, shared by
            # every kernel started there: the same race again, and stray files in notebooks/.
            return str(socket_dir / "kernel")

    return IpcKernelManager


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--cwd", type=Path, required=True, help="the kernel's working directory")
    parser.add_argument("--parameters", type=json.loads, default={}, help="a JSON object to inject")
    parser.add_argument("--execution-timeout", type=int, default=None, help="seconds per cell")
    parser.add_argument("--socket-dir", type=Path, default=None,
                        help="folder for the kernel's sockets (created, then removed; default: a new temporary one)")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # --log-output goes to our log
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))  # so the finally below runs
    # A short path under the system temp dir: a Unix socket path must stay under 108 bytes.
    if args.socket_dir:
        args.socket_dir.mkdir(parents=True)
    socket_dir = args.socket_dir or Path(tempfile.mkdtemp(prefix="nbk-"))
    try:
        papermill.execute_notebook(
            str(args.input), str(args.output), parameters=args.parameters, kernel_name="python3",
            cwd=str(args.cwd), progress_bar=False, log_output=True,
            execution_timeout=args.execution_timeout,
            kernel_manager_class=ipc_kernel_manager(socket_dir))
    except CellTimeoutError:
        print(f"a cell timed out after {args.execution_timeout} s", file=sys.stderr)
        sys.exit(TIMED_OUT)
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
