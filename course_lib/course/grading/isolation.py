"""Isolating untrusted code with bubblewrap: one process tree per sandbox, nothing of it alive afterwards.

A ``Sandbox`` turns a command into ``python launcher.py ... -- bwrap ... command`` (``launcher.py`` sets the limits,
bubblewrap does the isolation). What runs inside gets:

* its own PID, network, IPC, UTS and user namespaces (``--unshare-all``): it sees only its own processes, has
  only a loopback interface of its own (no network, no service of the host on 127.0.0.1), and runs as the
  unprivileged uid 65534 without capabilities; nested user namespaces are refused;
* a new root with the system (``/usr``, a few files of ``/etc``), Python and the venv, and the ``readonly``
  paths, all read-only; ``hidden`` paths (say, torchvision) replaced by an empty folder whose ``__init__.py``
  raises ImportError; a private ``/tmp``; ``work`` (its HOME and current folder) and ``writable`` the only
  places it can write;
* an allow-listed environment (``--clearenv``): nothing of the grader's environment unless passed on purpose;
* limits on the whole tree: memory and tasks by a control group where this process may create one (root
  usually can), else ``RLIMIT_NPROC`` plus a watchdog that sums the tree's resident memory; ``RLIMIT_AS`` and
  ``RLIMIT_FSIZE`` per process; no core files;
* a new session (no writing into the grader's terminal); standard output and error go to a pipe of which the
  grader keeps only the last ``Limits.log_bytes``;
* when it ends, or when ``kill()`` is called, bubblewrap and with it the whole PID namespace is killed.

``engine_problem()`` says why isolation is unavailable (bubblewrap missing, user namespaces disabled).
What this cannot promise: a kernel bug, the CPU time it takes (only the grader's wall-clock limit bounds it),
disk space in ``work`` beyond the per-file size, or side channels between tenants of one machine.
"""

from __future__ import annotations

import collections
import functools
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

SANDBOX_UID = 65534  # "nobody" inside the sandbox's user namespace
LAUNCHER = Path(__file__).with_name("launcher.py")
INSTALL_HELP = ("install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; Fedora: `dnf install bubblewrap`; "
                "`./course doctor` says whether it works here), or pass --no-sandbox to grade only notebooks you "
                "trust (your own)")
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "passwd", "group", "hosts", "localtime",
             "fonts", "alternatives", "mime.types", "matplotlibrc")
BLOCKED_PACKAGE = 'raise ImportError("{name} is not available here: the grader runs this exercise without it")\n'


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 8 * 2**30  # the whole tree; also each process's address space
    tasks: int = 512  # processes and threads of the whole tree
    file_bytes: int = 4 * 2**30  # the largest file it may write
    log_bytes: int = 64 * 2**10  # the tail of its output the grader keeps
    tmp_bytes: int = 512 * 2**20  # its private /tmp


@functools.cache
def engine_problem() -> str | None:
    """``None`` when bubblewrap can isolate here, else one line saying why not and what to do."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return f"bubblewrap is not installed: {INSTALL_HELP}"
    try:
        done = subprocess.run([bwrap, "--unshare-all", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
                               "--", "true"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap did not start ({exc}): {INSTALL_HELP}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        return (f"bubblewrap cannot create namespaces on this machine ({last}); enable unprivileged user "
                f"namespaces (sysctl kernel.unprivileged_userns_clone=1) or {INSTALL_HELP.split(', or ')[1]}")
    return None


def python_paths() -> list[Path]:
    """The folders the sandbox needs to run this Python and its packages (the venv and the base install)."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent}
    return sorted(p.resolve() for p in paths)


def site_packages() -> Path:
    import sysconfig

    return Path(sysconfig.get_paths()["purelib"]).resolve()


def _cgroup_dirs(limits: Limits) -> list[Path]:
    """Child control groups with the tree's memory and task limits, or ``[]`` where none can be made here."""
    made: list[Path] = []
    name = f"course-sandbox-{uuid.uuid4().hex[:12]}"
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    v1 = {c: rel for line in lines for _, cs, rel in [line.split(":", 2)] for c in cs.split(",") if c}
    try:
        if "memory" in v1 and "pids" in v1:
            for controller, settings in (("memory", {"memory.limit_in_bytes": limits.memory_bytes}),
                                         ("pids", {"pids.max": limits.tasks})):
                folder = Path("/sys/fs/cgroup", controller, v1[controller].lstrip("/"), name)
                folder.mkdir()
                made.append(folder)
                for key, value in settings.items():
                    (folder / key).write_text(str(value))
        else:
            rel = next(line.split(":", 2)[2] for line in lines if line.startswith("0::"))
            folder = Path("/sys/fs/cgroup", rel.lstrip("/"), name)
            folder.mkdir()
            made.append(folder)
            (folder / "memory.max").write_text(str(limits.memory_bytes))
            (folder / "memory.swap.max").write_text("0")
            (folder / "pids.max").write_text(str(limits.tasks))
    except (OSError, StopIteration, ValueError):
        _remove_cgroups(made)
        return []
    return made


def _memory_limit_hit(folders: list[Path]) -> bool:
    """Whether the control group's memory limit stopped something (an out-of-memory kill or a refused charge)."""
    for folder in folders:
        try:
            if (folder / "memory.failcnt").exists() and int((folder / "memory.failcnt").read_text()) > 0:
                return True
            events = folder / "memory.events"
            if events.exists() and any(line.startswith("oom_kill ") and int(line.split()[1]) > 0
                                       for line in events.read_text().splitlines()):
                return True
        except (OSError, ValueError):
            continue
    return False


def _remove_cgroups(folders: list[Path]) -> None:
    for folder in folders:
        for _ in range(50):
            try:
                pids = [int(p) for p in (folder / "cgroup.procs").read_text().split()]
            except OSError:
                pids = []
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                folder.rmdir()
                break
            except OSError:
                time.sleep(0.05)


class OutputTail:
    """A pipe whose reader keeps only the last ``limit`` bytes written into it (and counts them all)."""

    def __init__(self, limit: int):
        self.read_fd, self.write_fd = os.pipe()
        self.kept: collections.deque[bytes] = collections.deque()
        self.size = 0
        self.total = 0
        self.limit = limit
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while chunk := os.read(self.read_fd, 65536):
            self.total += len(chunk)
            self.kept.append(chunk)
            self.size += len(chunk)
            while self.size - len(self.kept[0]) >= self.limit:
                self.size -= len(self.kept.popleft())
        os.close(self.read_fd)

    def close_writer(self) -> None:
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1

    def text(self) -> str:
        self.close_writer()
        self.thread.join(timeout=5)
        return b"".join(self.kept)[-self.limit:].decode("utf-8", errors="replace")


@dataclass
class Sandbox:
    """One isolated process tree; see the module's docstring. Use as a context manager."""

    work: Path
    limits: Limits = field(default_factory=Limits)
    readonly: list[Path] = field(default_factory=list)
    writable: list[Path] = field(default_factory=list)
    hidden: list[Path] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    stopped_for: str | None = None  # "memory" or "tasks" when the watchdog stopped it
    _cgroups: list[Path] = field(default_factory=list)
    _private: Path | None = None
    _watchdog: threading.Thread | None = None
    _done: threading.Event = field(default_factory=threading.Event)
    log: OutputTail | None = None

    def __enter__(self) -> Sandbox:
        problem = engine_problem()
        if problem:
            raise RuntimeError(problem)
        self.work = Path(self.work).resolve()
        self._private = Path(self.work.parent, f".sandbox-{uuid.uuid4().hex[:8]}")
        self._private.mkdir(mode=0o700)
        self._cgroups = _cgroup_dirs(self.limits)
        return self

    def __exit__(self, *exc) -> None:
        self.kill()

    def environment(self) -> dict[str, str]:
        path = os.pathsep.join([str(Path(sys.executable).parent), "/usr/local/bin", "/usr/bin", "/bin"])
        base = {"PATH": path, "HOME": str(self.work), "TMPDIR": "/tmp", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1", "MPLBACKEND": "Agg",
                "MPLCONFIGDIR": str(self.work / ".config" / "matplotlib"), "IPYTHONDIR": str(self.work / ".ipython"),
                "JUPYTER_CONFIG_DIR": str(self.work / ".jupyter"), "JUPYTER_DATA_DIR": str(self.work / ".jupyter")}
        return base | self.env

    def argv(self, command: list[str]) -> list[str]:
        """``command`` wrapped: the launcher (limits), then bubblewrap (namespaces and file system)."""
        launch = [sys.executable, "-I", "-S", str(LAUNCHER)]
        for folder in self._cgroups:
            launch += ["--cgroup", str(folder)]
        launch += ["--limit", f"AS={self.limits.memory_bytes}", "--limit", f"NPROC={self.limits.tasks}",
                   "--limit", f"FSIZE={self.limits.file_bytes}", "--limit", "CORE=0", "--"]
        bw = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
              "--new-session", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--cap-drop", "ALL",
              "--hostname", "sandbox", "--proc", "/proc", "--dev", "/dev",
              "--size", str(self.limits.tmp_bytes), "--tmpfs", "/tmp"]
        for top in ("bin", "lib", "lib32", "lib64", "sbin"):
            p = Path("/", top)
            if p.is_symlink():
                bw += ["--symlink", os.readlink(p), str(p)]
            elif p.is_dir():
                bw += ["--ro-bind", str(p), str(p)]
        bw += ["--ro-bind", "/usr", "/usr"]
        for name in ETC_FILES:
            bw += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
        if Path("/sys/devices/system/cpu").is_dir():  # torch and OpenMP count the CPUs here
            bw += ["--ro-bind", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]
        for p in [*python_paths(), *self.readonly]:
            bw += ["--ro-bind", str(p), str(p)]
        for p in self.hidden:
            blocker = self._private / f"blocked-{p.name}.py"
            blocker.write_text(BLOCKED_PACKAGE.format(name=p.name))
            bw += ["--tmpfs", str(p), "--ro-bind", str(blocker), str(p / "__init__.py"), "--remount-ro", str(p)]
        for p in [self.work, *self.writable]:
            bw += ["--bind", str(p), str(p)]
        bw += ["--remount-ro", "/", "--chdir", str(self.work), "--clearenv"]
        for key, value in self.environment().items():
            bw += ["--setenv", key, value]
        return launch + bw + ["--", *command]

    def prepare(self) -> None:
        """Hand ``work`` and ``writable`` to the sandbox's user (as root; elsewhere they are the user's already)."""
        if os.getuid() == 0:
            return  # uid 65534 inside maps to root outside: it owns what root owns
        for p in [self.work, *self.writable]:
            os.chmod(p, 0o700)

    def open_log(self) -> int:
        """A pipe for the sandbox's standard output and error; the grader keeps its last ``log_bytes``."""
        self.log = OutputTail(self.limits.log_bytes)
        return self.log.write_fd

    def started(self, process: subprocess.Popen) -> None:
        """Call once the engine runs: the log's writing end is the sandbox's alone, and the watchdog starts."""
        self.process = process
        self.log.close_writer()
        if not self._cgroups:  # a control group holds the tree itself; else the watchdog does
            self.watch(process.pid)

    def start(self, command: list[str], stdin=None, stdout=None) -> subprocess.Popen:
        """Start ``command`` in the sandbox; its standard error (and output, unless ``stdout``) go to ``self.log``."""
        self.prepare()
        log = self.open_log()
        process = subprocess.Popen(self.argv(command), stdin=stdin, stdout=stdout or log, stderr=log,
                                   cwd=self.work, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                                   start_new_session=True)
        self.started(process)
        return process

    def watch(self, pid: int) -> None:
        """Stop the tree under ``pid`` when it holds more memory or tasks than the limits (checked 5 times a second).
        Resident memory is summed over the processes, so pages they share count once per process: stricter
        than a control group."""
        def loop():
            while not self._done.wait(0.2):
                rss, tasks = tree_usage(pid)
                if rss is None:
                    return
                reason = "memory" if rss > self.limits.memory_bytes else "tasks" if tasks > self.limits.tasks else None
                if reason:
                    self.stopped_for = reason
                    _kill_pid(pid)
                    return

        self._watchdog = threading.Thread(target=loop, daemon=True)
        self._watchdog.start()

    def kill(self) -> None:
        """Kill the whole tree (bubblewrap's PID namespace dies with it) and remove what the sandbox set up."""
        self._done.set()
        if self.process is not None:
            _kill_pid(self.process.pid)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.stopped_for is None and _memory_limit_hit(self._cgroups):
            self.stopped_for = "memory"
        _remove_cgroups(self._cgroups)
        self._cgroups = []
        if self._private is not None:
            shutil.rmtree(self._private, ignore_errors=True)


def _kill_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def tree_usage(root: int) -> tuple[int | None, int]:
    """(resident bytes, tasks) of ``root`` and all its descendants; ``(None, 0)`` once ``root`` is gone."""
    parents: dict[int, int] = {}
    threads: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rfind(")") + 2:].split()
            parents[int(entry)] = int(fields[1])
            threads[int(entry)] = int(fields[17])
    if root not in parents:
        return None, 0
    children: dict[int, list[int]] = collections.defaultdict(list)
    for pid, parent in parents.items():
        children[parent].append(pid)
    tree, stack = [], [root]
    while stack:
        pid = stack.pop()
        tree.append(pid)
        stack += children.get(pid, [])
    page = os.sysconf("SC_PAGE_SIZE")
    rss = 0
    for pid in tree:
        try:
            rss += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * page
        except (OSError, IndexError, ValueError):
            pass
    return rss, sum(threads.get(pid, 0) for pid in tree)
