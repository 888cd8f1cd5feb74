"""Operational jobs."""

from __future__ import annotations

import os
import socket

from huey.contrib.djhuey import db_task


@db_task()
def worker_ping() -> str:
    """Answer from whichever consumer picks it up: proves the queue is being consumed."""
    return f"{socket.gethostname()}:{os.getpid()}"
