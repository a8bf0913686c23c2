"""The service's own exceptions: one root, and where each one ends.

Every exception this package raises for a reason of its own derives from
``FanoutError``; each keeps the built-in base it had (``ValueError``,
``LookupError``, ...), so ``except`` clauses written for those still match.
Where each one is defined, and what a user sees::

    FanoutError                          the root
    ├── config.ConfigError               (ValueError) a bad setting: ``fanout`` exits 2, one line
    ├── streams.errors.RedisUnavailable  Redis unreachable, too slow, or unconfirmed: 503
    ├── streams.errors.StreamFull        a group is a whole FANOUT_STREAM_MAXLEN behind: 503
    │   └── MemoryFull                   Redis memory at FANOUT_MEMORY_LIMIT of maxmemory: 503
    ├── streams.errors.DurabilityRefused the server cannot give FANOUT_DURABILITY: no start
    ├── streams.server.ServerRefused     an evicting maxmemory-policy, protected mode, auth,
    │                                    ACL: ``fanout serve`` exits 2, one line
    ├── streams.waits.NotConfirmed  (TimeoutError) WAIT/WAITAOF short: RedisUnavailable
    │   └── durability.ReplicasMissing   the primary has fewer replicas online than a 2xx
    │                                    waits for: 503 at once, nothing sent
    ├── streams.follow.Fenced            (redis ConnectionError) the primary a batch went to
    │                                    began failing over: its answer proves nothing, 503
    ├── streams.local.NoRedis            (LookupError) no URL and no running ``fanout serve``
    ├── streams.local.AlreadyServing     (RuntimeError) the data folder is another's
    ├── streams.embedded.EmbeddedError   (RuntimeError) the embedded Valkey did not start
    ├── domain.inbound.Unpublishable     an authentic body that cannot be published:
    │                                    dead-lettered (its reason and detail), answered 200
    ├── domain.envelope.MalformedEnvelope  (msgspec.ValidationError) becomes Unpublishable
    ├── http.errors.Problem              a request refused; status and ``error`` per class
    │   ├── InvalidSignature             401 invalid_signature
    │   ├── Unauthorized                 401 unauthorized: no valid admin token (dashboard)
    │   ├── Forbidden                    403 forbidden: sender IP; dashboard Host or origin
    │   ├── dashboard.LetterNotFound     404 not_found
    │   ├── BodyTooLarge                 413 body_too_large
    │   ├── UnsupportedMediaType         415 unsupported_media_type
    │   └── Unavailable                  503 unavailable + Retry-After
    │       └── BackPressure             503 unavailable, Retry-After 30: the stream is full
    ├── http.intake.ClientGone           the sender left before its body came: no answer
    ├── reconciler.voucherify_api.APIError  the Voucherify API refused: ``fanout poll`` exits 1
    │   ├── AuthError                    401/403: wrong app id or token, not retried
    │   └── NotFound                     404 for one action: skipped
    ├── reconciler.lease.LeaseLost       the poll lease expired under a pass
    ├── reconciler.poller.LeaseBusy      another poller kept the lease
    ├── testing.samples.SampleRefused    (ValueError) a sample the service would dead-letter:
    │                                    raised in the test that made it
    └── cli.errors.CommandError          an operator command failed: one line, exit status 1

Not ours, and how they end: ``redis.exceptions.RedisError`` (a safety net:
answered 503, never a 500), starlette's ``HTTPException`` (404 not_found,
405 method_not_allowed), ``msgspec.DecodeError`` (of an authentic body: Unpublishable).
``http.errors.EXCEPTION_HANDLERS`` maps them to HTTP answers in one place.
"""

from __future__ import annotations


class FanoutError(Exception):
    """The root of the service's own exceptions; ``str()`` is one line saying what and where."""
