"""Execute one notebook with papermill, its kernel talking over IPC sockets instead of TCP ports.

jupyter_client chooses a kernel's TCP ports by binding free ones and releasing them before the
kernel binds them, so two kernels started at the same moment can be handed the same ports; one of
them then waits forever for replies (nteract/papermill#511). The harness starts two kernels at a
time, and this hung a test run here once in about ten. Unix sockets in a folder of their own
cannot collide. run_notebooks.py calls this once per notebook, in its own process.

    python ci/execute_notebook.py IN.ipynb OUT.ipynb --cwd DIR --parameters '{"epochs": 2}'
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

import papermill
from jupyter_client.manager import AsyncKernelManager
from traitlets import CaselessStrEnum, default


def ipc_kernel_manager(socket_dir: Path) -> type[AsyncKernelManager]:
    """A kernel manager whose sockets are files ``socket_dir/kernel-1`` … ``kernel-5``."""

    class IpcKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

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
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(message)s")  # --log-output goes to our log
    # A short path under the system temp dir: a Unix socket path must stay under 108 bytes.
    socket_dir = Path(tempfile.mkdtemp(prefix="nbk-"))
    try:
        papermill.execute_notebook(
            str(args.input), str(args.output), parameters=args.parameters, kernel_name="python3",
            cwd=str(args.cwd), progress_bar=False, log_output=True,
            execution_timeout=args.execution_timeout,
            kernel_manager_class=ipc_kernel_manager(socket_dir))
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
