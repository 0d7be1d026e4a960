"""Process liveness, without torch or a database: is a recorded pid still the process that was
recorded, when did a process start, what is a signal called.

The job manager asks it of workers and of other servers (recovery, docs/architecture.md); a worker
asks it of the app that started it (it exits when its parent is gone).
"""

from __future__ import annotations

import os
import signal

__all__ = ["pid_alive", "proc_stat", "signal_name"]

# A process that started up to this long after the moment it was recorded is still taken for the
# recorded one: /proc's start time is in clock ticks, and the recording may lag the fork a little.
START_SLACK_S = 2.0

_BOOT_TIME: float | None = None


def pid_alive(pid: int | None, not_after: float | None = None) -> bool:
    """True if `pid` is a live process that could be the one recorded at time `not_after`.

    A zombie (exited, not yet reaped: common for orphans in containers whose init does not reap)
    is dead. On Linux a process that started after `not_after` cannot be the recorded owner: the
    pid was reused.
    """
    if not pid or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, belongs to someone else
    except OSError:
        return False
    stat = proc_stat(pid)
    if stat is None:
        return True  # not Linux (or /proc unreadable): the signal check is all we have
    state, start = stat
    if state in ("Z", "X"):
        return False
    if not_after is not None and start is not None and start > not_after + START_SLACK_S:
        return False
    return True


def proc_stat(pid: int) -> tuple[str, float | None] | None:
    """(state letter, start time as epoch seconds) from /proc, or None where there is no /proc."""
    global _BOOT_TIME
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read().decode("ascii", "replace")
    except FileNotFoundError:
        return ("X", None) if os.path.isdir("/proc/self") else None
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()  # the command name may contain spaces and ")"
    state = fields[0]
    try:
        if _BOOT_TIME is None:
            with open("/proc/stat") as f:
                _BOOT_TIME = next(float(line.split()[1]) for line in f if line.startswith("btime"))
        start = _BOOT_TIME + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        start = None
    return state, start


def signal_name(signum: int) -> str:
    """"SIGKILL" for 9; "signal 77" for a number with no name here."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
