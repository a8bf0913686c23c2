"""The Redis core: keys, scripts, the publisher and its group commit, dead letters, replies.

May import ``service.domain`` and the support modules (config, metrics, logs);
never HTTP, the consumer, the reconciler or the CLI.
"""
