"""Running a notebook headless in a fresh kernel: the one piece of code behind ``course run`` and ``course grade``.

``execute_notebook`` runs every cell of an ``nbformat`` notebook in a new kernel started with its own
environment (the caller's ``os.environ`` is never changed), over local IPC sockets (no "running over TCP
without encryption" warning), with a wall-clock limit for the whole notebook. With ``sandbox=True`` (grading)
the kernel also gets an address-space limit (``resource.setrlimit(RLIMIT_AS)``) and no network: a
``sitecustomize`` placed on the kernel's ``PYTHONPATH`` only refuses every socket connection that is not to
the loopback interface or a local (Unix) socket. ``after(run)`` lets the caller send more code to the same
kernel once the notebook has run (the grader's checks). Used by: ``course run``, ``course grade``.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SITECUSTOMIZE = '''\
"""Course grading sandbox: memory limit and no network for this process (written by course_lib.course.sandbox)."""
import os as _os

_limit = _os.environ.get("COURSE_SANDBOX_MEMORY_BYTES")
if _limit:
    import resource as _resource
    _resource.setrlimit(_resource.RLIMIT_AS, (int(_limit), int(_limit)))

if _os.environ.get("COURSE_SANDBOX_NO_NETWORK"):
    import socket as _socket

    _LOCAL = ("127.", "::1", "localhost", "0.0.0.0")

    def _allowed(address):
        if not isinstance(address, tuple):  # AF_UNIX paths and the like
            return True
        return str(address[0]).startswith(_LOCAL)

    def _guard(method):
        def guarded(self, address, *args):
            if self.family in (_socket.AF_INET, _socket.AF_INET6) and not _allowed(address):
                raise OSError("network access is disabled while grading")
            return method(self, address, *args)
        return guarded

    for _name in ("connect", "connect_ex"):
        setattr(_socket.socket, _name, _guard(getattr(_socket.socket, _name)))
    _sendto = _socket.socket.sendto

    def _guarded_sendto(self, data, *args):
        if self.family in (_socket.AF_INET, _socket.AF_INET6) and not _allowed(args[-1]):
            raise OSError("network access is disabled while grading")
        return _sendto(self, data, *args)

    _socket.socket.sendto = _guarded_sendto
'''


@dataclass
class Run:
    """What happened when a notebook ran: ``error`` is ``None`` when every cell ran."""

    seconds: float = 0.0
    error: str | None = None
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


def kernel_env(extra: dict[str, str] | None = None, sandbox_dir: Path | None = None,
               memory_bytes: int | None = None, network: bool = True) -> dict[str, str]:
    """The environment for the kernel: this process's, plus ``extra`` and the sandbox settings (a new dict)."""
    env = dict(os.environ)
    env["COURSE_HEADLESS"] = "1"
    env.update(extra or {})
    if sandbox_dir is not None:
        (sandbox_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
        env["MPLBACKEND"] = "Agg"  # grading stores no figures
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(sandbox_dir), env.get("PYTHONPATH", "")) if p)
        if memory_bytes:
            env["COURSE_SANDBOX_MEMORY_BYTES"] = str(int(memory_bytes))
        if not network:
            env["COURSE_SANDBOX_NO_NETWORK"] = "1"
        for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
            env.pop(proxy, None)
    return env


def execute_notebook(nb, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None,
                     sandbox: bool = False, memory_bytes: int | None = None,
                     after: Callable[[Run], None] | None = None) -> Run:
    """Run every cell of ``nb`` (changed in place: outputs stored) in a fresh kernel in folder ``cwd``.

    The run stops at the first cell that raises, at ``timeout`` seconds for the whole notebook, or when
    the kernel dies; ``Run.error`` says which, in one line. ``after(run)`` is called with the kernel
    still alive (its time counts against ``timeout``).
    """
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync
    from nbclient import NotebookClient

    cwd = Path(cwd).resolve()
    t0 = time.perf_counter()
    run = Run(deadline=t0 + timeout, workdir=cwd)
    with tempfile.TemporaryDirectory(prefix="course-kernel-") as kdir:
        kdir = Path(kdir)
        kenv = kernel_env(env, sandbox_dir=kdir if sandbox else None, memory_bytes=memory_bytes,
                          network=not sandbox)
        km = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=str(kdir / "ipc"),
                           connection_file=str(kdir / "kernel.json"))
        client = NotebookClient(nb, km=km, timeout=int(timeout), kernel_name="python3",
                                interrupt_on_timeout=True, resources={"metadata": {"path": str(cwd)}})
        run.client = client
        try:
            with client.setup_kernel(env=kenv, cwd=str(cwd)):
                for index, cell in enumerate(nb.cells):
                    if cell.cell_type != "code":
                        continue
                    left = run.deadline - time.perf_counter()
                    if left <= 0:
                        run.error = f"time limit of {timeout:.0f} s reached before cell {index}"
                        break
                    run.error = _run_cell(client, cell, index, left)
                    if run.error:
                        if "time limit" in run.error:
                            run.error += f" ({timeout:.0f} s for the notebook)"
                        break
                if after is not None and (run.error is None or "died" not in run.error):
                    after(run)
        except Exception as exc:  # the kernel failed to start or vanished between cells
            run.error = run.error or f"the kernel could not run the notebook: {type(exc).__name__}: {exc}"[:300]
        finally:
            # nbclient shuts down only kernels it created itself; this one is ours, so stop it here
            # (else it lingers until this process exits, one kernel per notebook).
            try:
                run_sync(km.shutdown_kernel)(now=True)
            except Exception:  # already dead (crashed, killed at the memory limit)
                pass
    run.seconds = time.perf_counter() - t0
    return run
