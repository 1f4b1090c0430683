"""Messages to one charger connection, wherever it runs: a send to the channel its live state names.

The live state (apps/ocpp/live.py) names each connection's channel; commands (apps/ocpp/commands.py), the
watchdog's notice (apps/ocpp/tasks.py) and the "replaced" notice of a newer connection (apps/ocpp/consumer.py)
go straight to it, in whichever daphne process holds the socket. No channel-layer group per charger: joining
and leaving one cost a connect and a disconnect three Redis round trips (docs/benchmarks.md, runs Z).
"""

from __future__ import annotations

import logging
from typing import Any

from channels.exceptions import ChannelFull

logger = logging.getLogger(__name__)


async def send_to(layer: Any, channel: str, message: dict[str, Any]) -> bool:
    """Send a message to one connection's channel; False when its process's queue is full (a process that died:
    nobody reads it, and its messages expire)."""
    try:
        await layer.send(channel, message)
    except ChannelFull:
        logger.info("%s: channel full; %s not delivered", channel, message.get("type"))
        return False
    return True
