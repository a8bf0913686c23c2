"""The ``fanout`` command. Exit status: 0 ok, 1 failure, 2 usage or configuration."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import msgspec

from . import events, logs, poll_cli, samples, signature
from .config import ConfigError, Settings

SECRET_FILE = "webhook-secret"

# Flags of ``serve``; each one overrides the environment variable it names.
_SERVE_FLAGS: tuple[tuple[str, str, str], ...] = (
    (
        "--redis-url",
        "FANOUT_REDIS_URL",
        "redis://, rediss:// or unix:// URL (default: embedded Valkey)",
    ),
    ("--redis-cluster", "FANOUT_REDIS_CLUSTER", "1 to use the cluster client"),
    ("--secrets", "FANOUT_SECRETS", "comma-separated webhook secrets"),
    ("--stream-prefix", "FANOUT_STREAM_PREFIX", "prefix of every key"),
    ("--dedup-ttl", "FANOUT_DEDUP_TTL", "seconds a delivery is remembered"),
    ("--stream-maxlen", "FANOUT_STREAM_MAXLEN", "approximate cap per stream"),
    ("--max-body-bytes", "FANOUT_MAX_BODY_BYTES", "largest accepted body"),
    ("--allow-ips", "FANOUT_ALLOW_IPS", "comma-separated CIDRs allowed to post"),
    (
        "--trusted-proxies",
        "FANOUT_TRUSTED_PROXIES",
        "CIDRs of reverse proxies whose X-Forwarded-For is believed",
    ),
    ("--durability", "FANOUT_DURABILITY", "none, aof or replicas:N"),
    ("--data-dir", "FANOUT_DATA_DIR", "embedded server's files"),
    ("--host", "FANOUT_HOST", "listen address"),
    ("--port", "FANOUT_PORT", "listen port"),
    ("--redis-timeout", "FANOUT_REDIS_TIMEOUT", "seconds any Redis call may take"),
    ("--admin-token", "FANOUT_ADMIN_TOKEN", "token for /dashboard (default: localhost only)"),
)


class CommandError(Exception):
    """A failure to report in one line, exit status 1."""


def environ_with_flags(
    args: argparse.Namespace, flags: Iterable[tuple[str, str, str]]
) -> dict[str, str]:
    """The environment, with each given ``(flag, variable, help)`` flag overriding its variable."""
    env = dict(os.environ)
    for flag, variable, _ in flags:
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None:
            env[variable] = str(value)
    return env


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(environ_with_flags(args, _SERVE_FLAGS))


def _local_secret(data_dir: Path) -> tuple[str, bool]:
    """The secret kept in the data directory for local use; True when just made."""
    path = data_dir / SECRET_FILE
    if path.exists():
        return path.read_text().strip(), False
    data_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value, True


def cmd_serve(args: argparse.Namespace) -> int:
    import dataclasses
    from typing import cast

    import uvicorn
    from starlette.types import ASGIApp

    from .app import create_app
    from .config import Secret
    from .embedded import EmbeddedValkey
    from .proxies import TrustedProxies

    settings = _settings(args)
    if not settings.secrets:
        value, created = _local_secret(settings.data_dir)
        settings = dataclasses.replace(settings, secrets=(Secret(value),))
        where = settings.data_dir / SECRET_FILE
        if created:
            print(f"FANOUT_SECRETS is not set; generated a webhook secret: {value}")
            print(f"  kept in {where}. For local use only: set FANOUT_SECRETS in production.")
        else:
            print(f"FANOUT_SECRETS is not set; using the local secret kept in {where}.")
            print("  For local use only: set FANOUT_SECRETS in production.")
    embedded = None
    if settings.redis_url is None:
        embedded = EmbeddedValkey(settings.data_dir)
        url = embedded.start()
        settings = dataclasses.replace(settings, redis_url=url, redis_cluster=False)
        print(f"embedded Valkey listening on {url} (AOF on, files in {embedded.data_dir})")
    try:
        asyncio.run(_preflight(settings))
        print(f"webhook URL: http://{settings.host}:{settings.port}/webhooks/voucherify")
        sys.stdout.flush()
        if args.workers > 1:
            return _serve_workers(settings, args)
        config = uvicorn.Config(
            create_app(settings, background=poll_cli.serve_background(bool(args.poll), settings)),
            host=settings.host,
            port=settings.port,
            loop="uvloop",
            http="httptools",
            lifespan="on",
            log_level=args.log_level,
            log_config=None,  # keep the structured logging set up in main()
            server_header=False,
            # Client addresses are the peer's: X-Forwarded-For is not trusted by default.
            proxy_headers=False,
            access_log=False,
            timeout_graceful_shutdown=10,
        )
        # The sender's address comes from X-Forwarded-For only via a trusted proxy
        # (as factory.build does for the workers).
        app = cast("ASGIApp", config.app)  # the app object given just above
        config.app = TrustedProxies(app, settings.trusted_proxies)
        server = uvicorn.Server(config)
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal
        # again for the handler that was there before; make that one a no-op so
        # a requested shutdown exits 0 after the embedded server is stopped.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: None)
        server.run()
        return 0 if server.started else 1
    finally:
        if embedded is not None:
            embedded.stop()


def _serve_workers(settings: Settings, args: argparse.Namespace) -> int:
    """Run ``args.workers`` processes sharing one listening socket.

    Each worker builds its app from the environment (``service.factory``), so
    the settings resolved here (flags, the local secret, the embedded server's
    URL) are exported first. On SIGTERM the parent stops every worker
    gracefully and exits 0.
    """
    import uvicorn

    os.environ.update(
        {
            "FANOUT_REDIS_URL": settings.redis_url or "",
            "FANOUT_REDIS_CLUSTER": "1" if settings.redis_cluster else "0",
            "FANOUT_SECRETS": ",".join(secret.reveal() for secret in settings.secrets),
            "FANOUT_STREAM_PREFIX": settings.stream_prefix,
            "FANOUT_DEDUP_TTL": str(settings.dedup_ttl),
            "FANOUT_STREAM_MAXLEN": str(settings.stream_maxlen),
            "FANOUT_MAX_BODY_BYTES": str(settings.max_body_bytes),
            "FANOUT_ALLOW_IPS": ",".join(map(str, settings.allow_ips or ())),
            "FANOUT_TRUSTED_PROXIES": ",".join(map(str, settings.trusted_proxies)),
            "FANOUT_DURABILITY": str(settings.durability),
            "FANOUT_REDIS_TIMEOUT": str(settings.redis_timeout),
            "FANOUT_ADMIN_TOKEN": settings.admin_token.reveal() if settings.admin_token else "",
            "FANOUT_POLL": "1" if args.poll else os.environ.get("FANOUT_POLL", "0"),
            "FANOUT_LOG_LEVEL": args.log_level,
            "FANOUT_LOG_FORMAT": args.log_format,
        }
    )
    # Counters of every worker go to files here, so any worker's /metrics is the sum.
    own_metrics_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    if own_metrics_dir:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="fanout-metrics-")
    uvicorn.run(
        "service.factory:app",
        factory=True,
        workers=args.workers,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level=args.log_level,
        log_config=None,
        server_header=False,
        proxy_headers=False,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    if own_metrics_dir:
        shutil.rmtree(os.environ.pop("PROMETHEUS_MULTIPROC_DIR"), ignore_errors=True)
    return 0


async def _preflight(settings: Settings) -> None:
    """Refuse to start on a durability mode the server cannot give."""
    from . import connection
    from .publish import Publisher

    client = connection.from_settings(settings)
    try:
        publisher = Publisher.from_settings(client, settings)
        try:
            await publisher.check_durability()
        except RuntimeError as exc:
            raise CommandError(str(exc)) from None
    finally:
        await client.aclose()


def redis_url_for_tools(settings: Settings) -> str:
    """Where operator commands find Redis: the configured URL, else a running embedded server."""
    from .embedded import url_if_running

    url = settings.redis_url or url_if_running(settings.data_dir)
    if url is None:
        raise CommandError(
            f"FANOUT_REDIS_URL is not set and no embedded server runs in {settings.data_dir} "
            "(start `fanout serve` or set FANOUT_REDIS_URL)"
        )
    return url


def _send_secret(args: argparse.Namespace) -> bytes:
    if args.secret:
        return str(args.secret).encode()
    configured = os.environ.get("FANOUT_SECRETS", "").strip()
    if configured:
        return configured.split(",")[0].strip().encode()
    path = Path(os.environ.get("FANOUT_DATA_DIR") or ".fanout") / SECRET_FILE
    if path.exists():
        return path.read_text().strip().encode()
    raise CommandError("no secret: pass --secret, set FANOUT_SECRETS, or run `fanout serve` first")


def _bodies(args: argparse.Namespace) -> list[bytes]:
    if args.file is not None:
        try:
            return [Path(args.file).read_bytes()] * args.count
        except OSError as exc:
            raise CommandError(f"cannot read {args.file}: {exc.strerror}") from None
    return [
        msgspec.json.encode(samples.sample(args.sample, status=args.status))
        for _ in range(args.count)
    ]


def cmd_send(args: argparse.Namespace) -> int:
    key = _send_secret(args)
    url = args.url or (
        f"http://{os.environ.get('FANOUT_HOST', '127.0.0.1')}:"
        f"{os.environ.get('FANOUT_PORT', '8000')}/webhooks/voucherify"
    )
    failures = 0
    for body in _bodies(args):
        # The sender signs the compact form of the JSON, so do the same.
        signed = signature.compact(body) or body
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "content-type": "application/json",
                signature.HEADER: signature.sign(signed, key),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                status, answer = response.status, response.read()
        except urllib.error.HTTPError as exc:
            status, answer = exc.code, exc.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CommandError(f"cannot reach {url}: {reason}") from None
        print(f"{status} {answer.decode(errors='replace')}")
        failures += not 200 <= status < 300
    return 1 if failures else 0


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fanout", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="receive webhooks and publish to Redis Streams")
    for flag, variable, help_text in _SERVE_FLAGS:
        serve.add_argument(flag, help=f"{help_text} [{variable}]")
    serve.add_argument(
        "--workers",
        type=_positive,
        default=1,
        help="worker processes sharing the port (default 1); each is a full receiver",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.add_argument(
        "--log-format",
        default="auto",
        choices=["auto", "json", "text"],
        help="JSON lines, readable text, or auto: text on a terminal, JSON otherwise",
    )
    serve.set_defaults(handler=cmd_serve)

    send = commands.add_parser("send", help="sign and post an async action to the receiver")
    source = send.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", help="JSON file holding one async action")
    source.add_argument("--sample", choices=events.TYPES, metavar="TYPE", help="built-in sample")
    send.add_argument(
        "--status", default="DONE", choices=["ENQUEUED", "IN_PROGRESS", "DONE", "FAILED"]
    )
    send.add_argument("--count", type=int, default=1, help="how many to send (new ids each)")
    send.add_argument("--url", help="webhook URL (default: from FANOUT_HOST and FANOUT_PORT)")
    send.add_argument("--secret", help="secret to sign with (default: FANOUT_SECRETS or local)")
    send.set_defaults(handler=cmd_send)

    from . import ops

    ops.register(commands)
    poll_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    log_format = getattr(args, "log_format", "text")
    logs.setup(
        getattr(args, "log_level", "info"),
        json=None if log_format == "auto" else log_format == "json",
    )
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        print(f"fanout: configuration error: {exc}", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"fanout: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
