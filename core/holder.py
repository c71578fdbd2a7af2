"""Who holds a lease: a process on a host, named so that another process can
prove it dead.

A :class:`Holder` names the host (its name and its boot), the process id
and the process's start time. A process id alone proves nothing (ids are
reused); an id with the process's start time names one process for good.
:func:`holder_is_dead` answers from this host only: ``True`` when the
holder's host is this one and its process is gone (no such pid, or a
process with that pid that started at another time, or the host has booted
since), ``False`` when it is alive *or cannot be proven dead* (another
host, or a platform that does not say). Only a proven death lets a lease go
before its expiry; everything else waits for the lease to run out.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path

import msgspec

__all__ = ["Holder", "holder_is_dead", "this_holder"]


class Holder(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """The process that holds a lease. ``host`` is the host name; ``boot`` the
    host's boot id (Linux: ``/proc/sys/kernel/random/boot_id``), when known;
    ``pid`` the process id; ``started`` the process's start time in clock
    ticks since boot (Linux: field 22 of ``/proc/PID/stat``), when known;
    ``pids`` the process-id namespace the pid belongs to (Linux:
    ``/proc/self/ns/pid``), when known: two containers may share a host name
    and a boot but not their process ids."""

    host: str
    pid: int
    boot: str | None = None
    started: int | None = None
    pids: str | None = None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, int] | None:
    """The state letter and the start time (ticks since boot) of process
    ``pid``, from ``/proc/PID/stat``, or ``None`` when it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])  # fields 3 and 22 of the whole line
    except (IndexError, ValueError):
        return None


def _start_time(pid: int) -> int | None:
    """The start time of process ``pid`` in ticks since boot, or ``None``."""
    stat = _stat(pid)
    return None if stat is None else stat[1]


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


@cache
def _this_host() -> tuple[str, str | None, str | None]:
    return socket.gethostname(), _boot_id(), _pid_namespace()


def this_holder() -> Holder:
    """The holder this process writes into the leases it takes."""
    host, boot, pids = _this_host()
    pid = os.getpid()  # (not cached: a forked child is another holder)
    return Holder(host=host, pid=pid, boot=boot, started=_start_time(pid), pids=pids)


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    except OSError:
        return True  # cannot tell: treat as alive
    return True


def holder_is_dead(holder: Holder) -> bool:
    """True only when ``holder`` is provably gone: it ran on this host (same
    name and, when both are known, the same boot) and its process no longer
    exists (in the same process-id namespace), or is a zombie (killed, not
    yet reaped: it never runs again); or it ran on this host in an earlier
    boot. Never blocks long (a ``kill(pid, 0)`` and small reads of ``/proc``)."""
    host, boot, pids = _this_host()
    if holder.host != host:
        return False  # another host: only its lease's expiry can tell
    if holder.boot is not None and boot is not None and holder.boot != boot:
        return True  # this host has rebooted since: every process of then is gone
    if holder.pids is None or pids is None or holder.pids != pids or holder.pid <= 0:
        return False  # another container's (or an unknown) process-id space
    if holder.pid == os.getpid():
        return holder.started is not None and holder.started != _start_time(holder.pid)
    if not _pid_exists(holder.pid):
        return True
    stat = _stat(holder.pid)
    if holder.started is None or stat is None:
        return False  # a process has that pid; without a start time, it may be ours
    state, started = stat
    if started != holder.started:
        return True  # the pid was reused: the holder is gone
    # The holder itself, killed but not yet reaped by its parent: it never runs
    # again. (A leader thread that exited while others run shows "Z" too: its
    # other threads are still listed under task/.)
    return state in ("Z", "X") and _threads(holder.pid) <= 1


def _threads(pid: int) -> int:
    """How many threads ``/proc/PID/task`` lists (a large number if unreadable)."""
    try:
        return sum(1 for _ in Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return 2**31
