"""``fanout send``: sign a file or a built-in sample as Voucherify does and post it.

Samples: an async action of any of the 22 types, or a webhook event of any of
the 72 documented types (the vendor's example data in the v2024-01-01
envelope, from a project webhook or a distribution as Voucherify sends it).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import httpx
import msgspec

from ..domain import actions, samples, webhook_samples
from ..domain.text import escape
from ..domain.webhook_data import ALIASES
from ..http import signature
from .errors import CommandError
from .serve import SECRET_FILE

#: Types ``--sample`` takes: async action types, webhook event types in either spelling.
SAMPLE_TYPES = (*actions.TYPES, *webhook_samples.TYPES, *ALIASES)


def _sample(type_: str, status: str) -> bytes:
    if type_ in actions.BY_TYPE:
        return msgspec.json.encode(samples.sample(type_, status=status))
    return msgspec.json.encode(webhook_samples.envelope(type_))


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = commands.add_parser("send", help="sign and post a webhook body to the receiver")
    source = send.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", help="JSON file: an async action or an envelope")
    source.add_argument(
        "--sample",
        choices=SAMPLE_TYPES,
        metavar="TYPE",
        help="built-in sample: an async action type (VOUCHERS.IMPORT) "
        "or a webhook event type (voucher.published)",
    )
    send.add_argument(
        "--status",
        default="DONE",
        choices=["ENQUEUED", "IN_PROGRESS", "DONE", "FAILED"],
        help="of an async action sample",
    )
    send.add_argument("--count", type=int, default=1, help="how many to send (new ids each)")
    send.add_argument("--url", help="webhook URL (default: from FANOUT_HOST and FANOUT_PORT)")
    send.add_argument("--secret", help="secret to sign with (default: FANOUT_SECRETS or local)")
    send.set_defaults(handler=cmd_send)


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
    return [_sample(args.sample, args.status) for _ in range(args.count)]


def cmd_send(args: argparse.Namespace) -> int:
    key = _send_secret(args)
    url = args.url or (
        f"http://{os.environ.get('FANOUT_HOST', '127.0.0.1')}:"
        f"{os.environ.get('FANOUT_PORT', '8000')}/webhooks/voucherify"
    )
    failures = 0
    with httpx.Client(timeout=15) as client:
        for body in _bodies(args):
            # The sender signs the compact form of the JSON, so do the same.
            signed = signature.compact(body) or body
            headers = {
                "content-type": "application/json",
                signature.HEADER: signature.sign(signed, key),
            }
            try:
                response = client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                raise CommandError(f"cannot reach {url}: {exc or type(exc).__name__}") from None
            print(f"{response.status_code} {escape(response.content.decode(errors='replace'))}")
            failures += not response.is_success
    return 1 if failures else 0
