"""voucherify-fanout: Voucherify async-action webhooks to typed Redis Streams events."""

__version__ = "0.1.0"
