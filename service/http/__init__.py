"""The HTTP side: the Starlette app, the webhook receiver and its checks, the dashboard.

May import ``service.streams``, ``service.domain`` and the support modules;
never the consumer, the reconciler or the CLI.
"""
