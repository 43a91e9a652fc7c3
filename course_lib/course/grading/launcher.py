"""Enter the sandbox's control group, set its resource limits, then become the isolation engine (bubblewrap).

Run by the grader as ``python -I -S launcher.py [--cgroup DIR]... [--limit NAME=VALUE]... -- bwrap ...``: a
separate, tiny program (standard library only) so that the limits hold for the whole tree the engine starts,
from its first instruction. ``NAME`` is a ``resource.RLIMIT_*`` suffix (``AS``, ``NPROC``, ``FSIZE``, ``CORE``).
``NPROC`` counts every task of the calling user, so for a user other than root the launcher adds the tasks that
user already runs (root is not held by ``RLIMIT_NPROC`` at all: there the control group's ``pids.max`` does it).
"""

from __future__ import annotations

import os
import resource
import sys


def tasks_of_user(uid: int) -> int:
    """How many tasks (threads included) processes of ``uid`` run now."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status", encoding="ascii", errors="replace") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                count += int(fields["Threads"])
        except (OSError, KeyError, ValueError):
            continue  # the process ended meanwhile
    return count


def main(argv: list[str]) -> None:
    if "--" not in argv:
        sys.exit("launcher: usage: launcher.py [--cgroup DIR] [--limit NAME=VALUE] -- command ...")
    split = argv.index("--")
    options, command = argv[:split], argv[split + 1:]
    for flag, value in zip(options[::2], options[1::2], strict=True):
        if flag == "--cgroup":
            with open(os.path.join(value, "cgroup.procs"), "w", encoding="ascii") as f:
                f.write(str(os.getpid()))
        elif flag == "--limit":
            name, number = value.split("=")
            limit = int(number)
            if name == "NPROC" and os.getuid() != 0:
                limit += tasks_of_user(os.getuid())
            resource.setrlimit(getattr(resource, "RLIMIT_" + name), (limit, limit))
        else:
            sys.exit(f"launcher: unknown option {flag}")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
