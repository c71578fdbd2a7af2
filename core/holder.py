"""Who holds a lease: a process on a host, named so that another process can
prove it dead.

A :class:`Holder` names the host (its name and its boot), the process-id
namespace, the process id and the process's start time. A process id alone
proves nothing (ids are reused); an id with the process's start time names
one process for good. :func:`holder_is_dead` answers from this host only:
``True`` when the holder ran on this host, in this boot and this pid
namespace, and its process is gone (no such pid, a process with that pid
that started at another time, or a zombie), ``False`` when it is alive *or
cannot be proven dead* (another host or boot, which may be another machine
of the same name; another container; a platform without ``/proc``). Only a
proven death lets a lease go before its expiry; everything else waits for
the lease to run out.
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path
from typing import Annotated

import msgspec

__all__ = ["Holder", "holder_is_dead", "this_holder"]


class Holder(msgspec.Struct, frozen=True, kw_only=True, gc=False, omit_defaults=True):
    """The process that holds a lease. ``host`` is the host name; ``boot`` the
    host's boot id (Linux: ``/proc/sys/kernel/random/boot_id``), when known;
    ``pid`` the process id; ``started`` the process's start time in clock
    ticks since boot (Linux: field 22 of ``/proc/PID/stat``), when known;
    ``pids`` the process-id namespace the pid belongs to (Linux:
    ``/proc/self/ns/pid``), when known: two containers may share a host name
    and a boot but not their process ids. A holder is only ever compared
    with this host's: the same host name, boot and namespace, and a pid with
    that start time."""

    host: Annotated[str, msgspec.Meta(min_length=1, max_length=255)]
    pid: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)]
    boot: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    started: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    pids: Annotated[str, msgspec.Meta(max_length=64)] | None = None


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
    """True only when ``holder`` is provably gone: it ran on this host (the
    same host name, boot and process-id namespace) and its process no longer
    exists, or is a zombie (killed, not yet reaped: it never runs again).
    Anything else, including a value no process has, is not proof: False.
    Never raises; never blocks long (a ``kill(pid, 0)`` and small reads of
    ``/proc``)."""
    try:
        return _is_dead(holder)
    except (OverflowError, ValueError, TypeError, OSError):
        return False  # a value no process of ours has (a damaged or crafted lease)


def _is_dead(holder: Holder) -> bool:
    host, boot, pids = _this_host()
    if holder.host != host or holder.boot is None or holder.boot != boot:
        # Another host, or this host name in another boot: two machines may
        # share a name (a cloned image), so only the lease's expiry can tell.
        return False
    if holder.pids is None or pids is None or holder.pids != pids or holder.pid <= 0:
        return False  # another container's (or an unknown) process-id space
    if holder.pid == os.getpid():
        mine = _start_time(holder.pid)  # (None when /proc cannot be read: not proof)
        return holder.started is not None and mine is not None and mine != holder.started
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
