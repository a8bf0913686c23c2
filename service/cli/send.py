"""``fanout send``: sign a file or a built-in sample as Voucherify does and post it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import httpx
import msgspec

from ..domain import actions, samples
from ..http import signature
from .errors import CommandError
from .serve import SECRET_FILE


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = commands.add_parser("send", help="sign and post an async action to the receiver")
    source = send.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", help="JSON file holding one async action")
    source.add_argument("--sample", choices=actions.TYPES, metavar="TYPE", help="built-in sample")
    send.add_argument(
        "--status", default="DONE", choices=["ENQUEUED", "IN_PROGRESS", "DONE", "FAILED"]
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
            print(f"{response.status_code} {response.content.decode(errors='replace')}")
            failures += not response.is_success
    return 1 if failures else 0
