"""The consumer library: read the streams with a consumer group, typed events in.

May import ``service.domain`` and ``service.streams`` (never HTTP, the
reconciler or the CLI), and loads neither starlette, uvicorn nor prometheus_client.
"""

from .connect import NoRedis, RedisTarget, open_redis
from .consumer import Consumer, Start
from .handling import Handler

__all__ = ["Consumer", "Handler", "NoRedis", "RedisTarget", "Start", "open_redis"]
