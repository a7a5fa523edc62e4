"""Which process is training a run, and whether it is still alive.

A run file records the training process as ``{"pid", "started", "host"}`` (``started``: the process's own
start time, so a reused pid is not mistaken for it). On the same host :func:`process_state` can tell a live
run from one whose process is gone (killed, crashed, power cut); on another host it cannot.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Literal

import psutil

ProcessState = Literal["alive", "gone", "elsewhere", "unknown"]
#: Start times are read back from /proc with 10 ms ticks; a different process with the same pid started
#: later differs by far more than this.
START_TOLERANCE_S = 0.5


def process_record() -> dict[str, Any]:
    """This process as stored in a run file: pid, start time (epoch seconds) and host name."""
    return {"pid": os.getpid(), "started": psutil.Process().create_time(), "host": socket.gethostname()}


def process_state(record: Any) -> ProcessState:
    """``alive`` or ``gone`` for a process recorded on this host; ``elsewhere`` for another host;
    ``unknown`` when the record is missing or malformed (runs written by older versions)."""
    if not isinstance(record, dict):
        return "unknown"
    try:
        pid, started, host = int(record["pid"]), float(record["started"]), str(record["host"])
    except (KeyError, TypeError, ValueError):
        return "unknown"
    if host != socket.gethostname():
        return "elsewhere"
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started) > START_TOLERANCE_S:
            return "gone"  # the pid now belongs to another process
        if proc.status() == psutil.STATUS_ZOMBIE:
            return "gone"
    except psutil.NoSuchProcess:
        return "gone"
    except psutil.Error:  # access denied: it exists
        return "alive"
    return "alive"


def describe(record: Any) -> str:
    """``pid 1234 on host-name`` (empty for a malformed record)."""
    if not isinstance(record, dict):
        return ""
    return f"pid {record.get('pid', '?')} on {record.get('host', '?')}"
