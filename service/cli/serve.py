"""``fanout serve``: the receiver, with an embedded Valkey and local secrets when none are set.

Without ``FANOUT_SECRETS`` a webhook secret, and without ``FANOUT_ADMIN_TOKEN``
an admin token, is generated once and kept in the data directory (mode 600);
the dashboard URL is printed with that token. ``--workers N`` runs N uvicorn
processes sharing the port; each builds its app from the environment through
``FACTORY`` (``workers.py`` runs uvicorn, in this process or as those workers).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import errno
import os
import secrets
import socket
import sys
from pathlib import Path
from urllib.parse import quote

from .. import logs
from ..config import ConfigError, PollSettings, Secret, Settings, webhook_secrets
from ..http.app import WEBHOOK_PATH
from ..streams import connection, local
from ..streams.embedded import EmbeddedError, EmbeddedValkey
from ..streams.errors import DurabilityRefused
from ..streams.promise import Promise
from ..streams.publisher import Publisher
from ..streams.server import ServerRefused
from . import flags, usage
from .errors import CommandError

ADMIN_TOKEN_FILE = "admin-token"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    serve = usage.add_command(
        commands,
        "serve",
        help=usage.COMMANDS["serve"],
        description="Receive webhooks on POST /webhooks/voucherify and publish them to Redis "
        "Streams. With nothing configured: an embedded Valkey and a generated secret, both "
        "kept in the data folder (.fanout), and a record there that the other commands and "
        "consumers use to find this server.",
        examples="""\
  fanout serve                                  all local: embedded Valkey, generated secret
  fanout serve --port 9000 --data-dir /tmp/f    another port and data folder
  FANOUT_REDIS_URL=redis://db:6379/0 FANOUT_SECRETS=s1,s2 fanout serve --workers 4
  FANOUT_VOUCHERIFY_APP_ID=<id> FANOUT_VOUCHERIFY_APP_TOKEN=<token> fanout serve
                                                also reads async actions from the API
  fanout serve --no-poll                        the receiver alone, credentials or not""",
    )
    flags.add(serve, flags.SERVE)
    serve.add_argument(
        "--workers",
        type=flags.positive,
        default=1,
        help="worker processes sharing the port (default 1); each is a full receiver",
    )
    serve.add_argument(
        "--poll",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the reconciler in the background, which reads async actions from the "
        "Voucherify API (they come by no webhook); default: on when FANOUT_VOUCHERIFY_APP_ID "
        "and FANOUT_VOUCHERIFY_APP_TOKEN are set [FANOUT_POLL]",
    )
    serve.set_defaults(handler=cmd_serve)


def _local_secret(data_dir: Path, name: str, variable: str) -> tuple[str, bool]:
    """The secret kept in ``data_dir / name`` (mode 600) when ``variable`` is unset.

    Made on first use and reused on every later start; True when just made.
    """
    path = data_dir / name
    try:
        if path.exists():
            value = path.read_text().strip()
            if not value:
                raise CommandError(
                    f"{path} is empty: delete it to make a new one, or set {variable}"
                )
            return value, False
        data_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(value + "\n")
    except OSError as exc:
        raise CommandError(
            f"cannot keep a secret in {path} ({exc.strerror}): set {variable}"
        ) from None
    return value, True


def cmd_serve(args: argparse.Namespace) -> int:
    settings = flags.settings(args)
    logs.setup_as(settings.log_level, settings.log_format)
    if settings.secrets_file is not None:
        try:  # read now, so a bad file stops start-up in one line
            webhook_secrets(settings)
        except ConfigError as exc:
            raise flags.blame(args, exc) from None
    if not settings.secrets and settings.secrets_file is None and settings.redis_url is not None:
        # A Redis of its own means a deployment: a generated secret would refuse every
        # delivery Voucherify signs. (The compose file no longer insists, so that
        # `docker compose ps/logs/down` work without it: the service does.)
        raise ConfigError(
            "FANOUT_SECRETS",
            "not set (nor FANOUT_SECRETS_FILE), and FANOUT_REDIS_URL is: set it to the webhook "
            "secret from Voucherify (Project settings > Webhooks); a secret is generated only "
            "for the embedded Valkey",
        )
    claim = _claim(settings)
    try:
        listener = _listen(settings.host, settings.port)
        try:
            return _serve(args, settings, listener, recorded=claim is not None)
        finally:
            listener.close()
    finally:
        if claim is not None:
            local.remove(settings.data_dir)
            claim.release()


def _claim(settings: Settings) -> local.Claim | None:
    """Hold the data folder, so a second ``fanout serve`` there stops with one line.

    With the embedded server the folder holds its files: a second server is
    refused. With a configured Redis the folder only holds the record: a
    second server runs, unrecorded (or with no writable folder, none is).
    """
    try:
        return local.Claim(settings.data_dir)
    except local.AlreadyServing as exc:
        if settings.redis_url is None:
            raise CommandError(str(exc)) from None
        print(f"fanout: not recorded in {settings.data_dir}: {exc}", file=sys.stderr)
    except OSError as exc:
        if settings.redis_url is None:
            raise CommandError(
                f"cannot use the data folder {settings.data_dir}: {exc.strerror} "
                "(set --data-dir or FANOUT_DATA_DIR)"
            ) from None
        print(
            f"fanout: not recorded in {settings.data_dir} ({exc.strerror}): "
            "`fanout` commands need FANOUT_REDIS_URL to find this server's Redis",
            file=sys.stderr,
        )
    return None


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything else starts (as uvicorn binds it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        hint = (
            " (another server uses it: stop that one, or choose a port with --port or FANOUT_PORT)"
            if exc.errno == errno.EADDRINUSE
            else " (set --host/FANOUT_HOST and --port/FANOUT_PORT)"
        )
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
    sock.set_inheritable(True)
    return sock


def _serve(
    args: argparse.Namespace, settings: Settings, listener: socket.socket, *, recorded: bool
) -> int:
    # Loaded only to serve: uvicorn and the front door are not needed by other commands.
    from ..http import front_door
    from . import workers

    if not settings.secrets and settings.secrets_file is None:
        value, created = _local_secret(settings.data_dir, local.SECRET_FILE, "FANOUT_SECRETS")
        settings = dataclasses.replace(settings, secrets=(Secret(value),))
        where = settings.data_dir / local.SECRET_FILE
        if created:
            print(f"FANOUT_SECRETS is not set; generated a webhook secret: {value}")
            print(f"  kept in {where}. For local use only: set FANOUT_SECRETS in production.")
        else:
            print(f"FANOUT_SECRETS is not set; using the local secret kept in {where}.")
            print("  For local use only: set FANOUT_SECRETS in production.")
    admin_token = None
    if settings.admin_token is None:
        admin_token, created = _local_secret(
            settings.data_dir, ADMIN_TOKEN_FILE, "FANOUT_ADMIN_TOKEN"
        )
        settings = dataclasses.replace(settings, admin_token=Secret(admin_token))
        where = settings.data_dir / ADMIN_TOKEN_FILE
        made = "generated an admin token" if created else "using the admin token"
        print(f"FANOUT_ADMIN_TOKEN is not set; {made} kept in {where}.")
    embedded = None
    if settings.redis_url is None:
        embedded = EmbeddedValkey(settings.data_dir)
        try:
            url = embedded.start()
        except EmbeddedError as exc:
            raise CommandError(str(exc)) from None
        settings = dataclasses.replace(settings, redis_url=url, redis_cluster=False)
        if embedded.moved:
            print(f"embedded Valkey: {embedded.moved}")
        print(
            f"embedded Valkey listening on {embedded.url} "
            f"(AOF on, fsync before every reply, files in {embedded.data_dir})"
        )
        print(
            f"  its password is kept in {embedded.password_file}; "
            "`fanout url --password` prints the URL with it"
        )
    try:
        promise = asyncio.run(_preflight(settings))
        # Each worker asks the server again and logs this same line: a mode resolved here
        # (auto -> none on Redis 7.0) would be described there as an explicit choice.
        print(("warning: " if promise.at_risk else "") + promise.line)
        base = f"http://{_url_host(settings.host)}:{settings.port}"
        print(f"webhook URL: {base}{WEBHOOK_PATH}")
        if admin_token is None:
            print(f"dashboard: {base}/dashboard?token=<FANOUT_ADMIN_TOKEN>")
        else:
            print(f"dashboard: {base}/dashboard?token={quote(admin_token, safe='')}")
        if recorded:
            assert settings.redis_url is not None
            record = local.write(
                settings.data_dir,
                redis_url=settings.redis_url,
                redis_cluster=settings.redis_cluster,
                stream_prefix=settings.stream_prefix,
                webhook_url=f"{base}{WEBHOOK_PATH}",
                dashboard_url=f"{base}/dashboard",
                redis_password_file=embedded.password_file if embedded else None,
            )
            print(f"recorded in {record}: `fanout` commands and consumers here find it")
        # Each connection is a file: the cap must fit the file limit (workers inherit it).
        files = front_door.raise_file_limit()
        limits, warning = front_door.limits_for(settings, files)
        if warning:
            print(f"warning: {warning}")
        print(front_door.describe(limits, files, args.workers))
        print(_reconciler_line(args.poll))
        if settings.secrets_file is not None:
            print(
                f"secrets also read from {settings.secrets_file}: "
                f"`kill -HUP {os.getpid()}` reads it again"
            )
        sys.stdout.flush()
        if args.workers > 1:
            return workers.serve_workers(settings, args.workers, args.poll, listener, limits)
        return workers.serve_here(settings, args.poll, listener, limits)
    finally:
        if embedded is not None:
            embedded.stop()


def _reconciler_line(requested: bool | None) -> str:
    """Whether the reconciler runs, and why, in one line for start-up."""
    poll = PollSettings.from_env()
    if requested is not None:
        poll = dataclasses.replace(poll, enabled=requested)
    if poll.active:
        return f"reconciler: on, reading async actions from {poll.api_url} (--no-poll: off)"
    if poll.enabled is False:
        return "reconciler: off (--no-poll or FANOUT_POLL=0)"
    return (
        "reconciler: off: FANOUT_VOUCHERIFY_APP_ID and FANOUT_VOUCHERIFY_APP_TOKEN are not "
        "set; async actions come by no webhook, only from the API"
    )


def _url_host(host: str) -> str:
    """How a browser on this machine reaches ``host``: a wildcard address is loopback."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


async def _preflight(settings: Settings) -> Promise:
    """What a 2xx will mean; refuse to start on a server the service must not use as
    configured (exit 2: an evicting maxmemory-policy, protected mode, auth, ACL), or on
    a durability mode the server cannot give (exit 1)."""
    client = connection.from_settings(settings)
    try:
        publisher = Publisher.from_settings(client, settings)
        try:
            memory = await publisher.check_server(allow_eviction=settings.allow_eviction)
        except ServerRefused as exc:
            raise ConfigError(exc.setting, exc.problem) from None
        if memory is not None:
            print(("warning: " if memory[1] else "") + memory[0])
        try:
            return await publisher.check_durability()
        except DurabilityRefused as exc:
            raise CommandError(str(exc)) from None
    finally:
        await client.aclose()
