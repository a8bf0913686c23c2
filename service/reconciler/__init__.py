"""The reconciler: poll the Voucherify API and publish the async actions the webhooks missed.

May import ``service.streams``, ``service.domain`` and the support modules
(config, logs); never HTTP, the consumer or the CLI.
"""
