"""Running a notebook headless in a fresh kernel: the one piece of code behind ``course run`` and ``course grade``.

``execute_notebook`` runs every cell of an ``nbformat`` notebook in a new kernel started with its own
environment (the caller's ``os.environ`` is never changed), over local IPC sockets (no "running over TCP
without encryption" warning), with a wall-clock limit for the whole notebook. Given an ``isolation`` (a
``course_lib.course.grading.isolation.Sandbox``, for grading), the kernel and everything it starts run inside
that sandbox (bubblewrap: own namespaces, read-only system, limits), its raw output goes to the sandbox's
capped log, and the outputs it sends are not kept beyond ``max_output_bytes``. ``after(run)`` lets the caller
send more code to the same kernel once the notebook has run. Used by: ``course run``, ``course grade``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Run:
    """What happened when a notebook ran: ``error`` is ``None`` when every cell ran."""

    seconds: float = 0.0
    error: str | None = None
    stopped_at: int | None = None  # the index of the cell where the run stopped (None: it ran to the end)
    client: object = None  # the nbclient.NotebookClient, usable inside ``after``
    deadline: float = 0.0
    workdir: Path | None = None
    extra: dict = field(default_factory=dict)

    def execute_code(self, code: str, limit: float) -> str | None:
        """Run ``code`` as one more (unsaved) cell; ``None`` on success, else a one-line reason."""
        import nbformat

        cell = nbformat.v4.new_code_cell(code)
        return _run_cell(self.client, cell, -1, max(1.0, min(limit, self.deadline - time.perf_counter())))


def _run_cell(client, cell, index: int, limit: float) -> str | None:
    from nbclient.exceptions import (
        CellExecutionError,
        CellTimeoutError,
        DeadKernelError,
    )

    where = f"cell {index}" if index >= 0 else "the grader's check"
    client.timeout = max(1, int(limit))
    started = time.perf_counter()
    if index < 0:  # not one of the notebook's cells: nbclient stores a cell at nb.cells[i], so lend it a slot
        client.nb.cells.append(cell)
    try:
        client.execute_cell(cell, index if index >= 0 else len(client.nb.cells) - 1, store_history=index >= 0)
    except CellTimeoutError:
        return f"{where} ran past the time limit"
    except CellExecutionError as exc:
        if exc.ename == "KeyboardInterrupt" and time.perf_counter() - started >= client.timeout - 0.5:
            return f"{where} ran past the time limit"  # nbclient interrupted it at the limit
        message = f"{exc.ename}: {exc.evalue}" if exc.evalue else exc.ename  # as a traceback's last line
        return f"{where} raised: {' '.join(message.split())[:300]}"
    except DeadKernelError as exc:
        return f"the kernel died in {where} (a crash, or out of memory): {str(exc)[:200]}"
    finally:
        if index < 0:
            client.nb.cells.pop()
    return None


def kernel_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for an unisolated kernel: this process's, plus ``extra`` (a new dict)."""
    import os

    env = dict(os.environ)
    env["COURSE_HEADLESS"] = "1"
    env.update(extra or {})
    return env


def _isolated_kernel_manager(isolation):
    """A kernel manager whose kernel command runs inside ``isolation`` (and whose interrupts are kills)."""
    from jupyter_client.manager import AsyncKernelManager

    class IsolatedKernelManager(AsyncKernelManager):
        def format_kernel_cmd(self, extra_arguments=None):
            return isolation.argv(super().format_kernel_cmd(extra_arguments))

    return IsolatedKernelManager


def execute_notebook(nb, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None, isolation=None,
                     max_output_bytes: int | None = None, after: Callable[[Run], None] | None = None) -> Run:
    """Run every cell of ``nb`` (changed in place: outputs stored) in a fresh kernel in folder ``cwd``.

    The run stops at the first cell that raises, at ``timeout`` seconds for the whole notebook, or when
    the kernel dies; ``Run.error`` says which, in one line. ``after(run)`` is called with the kernel
    still alive (its time counts against ``timeout``).
    """
    import tempfile

    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync

    cwd = Path(cwd).resolve()
    t0 = time.perf_counter()
    run = Run(deadline=t0 + timeout, workdir=cwd)
    with tempfile.TemporaryDirectory(prefix="course-kernel-") as kdir:
        kdir = Path(kdir)
        if isolation is not None:
            isolation.writable.append(kdir)
            isolation.env.update({"COURSE_HEADLESS": "1", **(env or {})})
            isolation.prepare()
            log = isolation.open_log()
            manager, kenv, streams = _isolated_kernel_manager(isolation), {}, {"stdout": log, "stderr": log}
        else:
            manager, kenv, streams = AsyncKernelManager, kernel_env(env), {}
        # IPC sockets in the kernel's own folder (no "TCP without encryption" warning); TCP on loopback where
        # ZeroMQ has no IPC transport (Windows).
        import zmq

        ipc = os.name != "nt" and zmq.has("ipc")
        km = manager(kernel_name="python3", transport="ipc" if ipc else "tcp",
                     ip=str(kdir / "ipc") if ipc else "127.0.0.1", connection_file=str(kdir / "kernel.json"))
        client = _client_class(max_output_bytes)(nb, km=km, timeout=int(timeout), kernel_name="python3",
                                                 interrupt_on_timeout=isolation is None,
                                                 resources={"metadata": {"path": str(cwd)}})
        run.client = client
        try:
            with client.setup_kernel(env=kenv, cwd=str(cwd), **streams):
                if isolation is not None:
                    isolation.started(km.provisioner.process)
                for index, cell in enumerate(nb.cells):
                    if cell.cell_type != "code":
                        continue
                    left = run.deadline - time.perf_counter()
                    if left <= 0:
                        run.error = f"time limit of {timeout:.0f} s reached before cell {index}"
                        run.stopped_at = index
                        break
                    run.error = _run_cell(client, cell, index, left)
                    if run.error:
                        run.stopped_at = index
                        if "time limit" in run.error:
                            run.error += f" ({timeout:.0f} s for the notebook)"
                        break
                if after is not None and (run.error is None or "died" not in run.error):
                    after(run)
        except Exception as exc:  # the kernel failed to start or vanished between cells
            if run.error is None:
                run.error = f"the kernel could not run the notebook: {type(exc).__name__}: {exc}"[:300]
                run.stopped_at = 0
        finally:
            # nbclient shuts down only kernels it created itself; this one is ours, so stop it here
            # (else it lingers until this process exits, one kernel per notebook).
            try:
                run_sync(km.shutdown_kernel)(now=True)
            except Exception:  # already dead (crashed, killed at the memory limit)
                pass
            if isolation is not None:
                isolation.kill()  # the whole tree, whatever the kernel left behind
    run.seconds = time.perf_counter() - t0
    return run


def _client_class(max_output_bytes: int | None):
    """nbclient's NotebookClient, keeping at most ``max_output_bytes`` of outputs in memory (None: all)."""
    from nbclient import NotebookClient

    if max_output_bytes is None:
        return NotebookClient

    class CappedClient(NotebookClient):
        kept_bytes = 0

        def output(self, outs, msg, display_id, cell_index):
            size = len(str(msg.get("content", "")))
            if self.kept_bytes + size > max_output_bytes:
                return None  # dropped: a flood of output must not grow the grader
            self.kept_bytes += size
            return super().output(outs, msg, display_id, cell_index)

    return CappedClient
