"""The inventory a test node reports, and enrollment of a channel as host1."""

from __future__ import annotations

import threading

from slicelab.agent.channel import Channel
from slicelab.agent.main import enroll
from slicelab.agent.state import AgentFiles

INVENTORY = {
    "cores": 2,
    "memory_mib": 1024,
    "disk_gib": 10,
    "interfaces": [],
    "devices": [],
    "host_ip": "172.31.250.2",
}


def enrolled(channel: Channel, files: AgentFiles) -> Channel:
    """``channel`` after enrolling as host1 with the one-time token ``tok-1``."""
    enroll(
        channel,
        files,
        token="tok-1",
        hostname="host1",
        inventory_doc=INVENTORY,
        stop=threading.Event(),
    )
    return channel
