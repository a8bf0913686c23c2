"""``fanout send``: sign a file or a built-in sample as Voucherify does and post it.

Samples (``domain.sample_bodies``, the source ``service.testing`` shares): an
async action of any of the 22 types, a webhook event of any of the 72
documented types (the vendor's example data in the v2024-01-01 envelope, from
a project webhook or a distribution as Voucherify sends it) or of the 17
schema-less ones, a Workflows webhook of any of its 80 types, or a custom body.

Where it posts: ``--url``, else ``FANOUT_HOST``/``FANOUT_PORT`` when set, else
the webhook URL of the running local server (its record, as
``service.streams.local`` finds it), else ``http://127.0.0.1:8000``. What it
signs with: ``--secret``, else the first of ``FANOUT_SECRETS``, else the local
secret of that server's data folder.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import httpx

from ..config import discovery
from ..domain import actions, sample_bodies
from ..domain.text import escape
from ..http import signature
from ..streams import local
from . import flags, usage
from .errors import CommandError

#: Types ``--sample`` takes: every kind's (``sample_bodies``, shared with ``service.testing``),
#: webhook event types in either spelling.
SAMPLE_TYPES = sample_bodies.ACCEPTED


def _sample(type_: str, status: str) -> bytes:
    # --status has its default; it means something to async actions only.
    return sample_bodies.body(type_, status=status if type_ in actions.BY_TYPE else None)


EXAMPLES = """\
  fanout send --sample VOUCHERS.IMPORT            sign a sample and post it to the local server
  fanout send --sample ORDERS.IMPORT --status FAILED --count 3
  fanout send --sample voucher.published          a webhook event in its envelope
  fanout send --sample POINTS_EARNED              a Workflows webhook (Loyalty v2)
  fanout send --sample custom                     a custom body (Payload Designer)
  fanout send action.json                         a body of your own
  fanout send --list-samples                      the types --sample takes
  fanout send --sample VOUCHERS.IMPORT --data-dir ../other/.fanout
  fanout send --sample VOUCHERS.IMPORT --url https://fanout.example.com/webhooks/voucherify \\
      --secret "$SECRET"                          check a deployment end to end
"""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    send = usage.add_command(
        commands,
        "send",
        help=usage.COMMANDS["send"],
        description="Sign a body as Voucherify does (x-voucherify-signature) and post it to "
        "the running `fanout serve` (or --url). Prints each answer's status and body; exit "
        "status 1 unless every answer is 2xx and no body was dead-lettered.",
        examples=EXAMPLES,
    )
    source = send.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", help="JSON file: an async action or an envelope")
    source.add_argument(
        "--sample",
        choices=SAMPLE_TYPES,
        metavar="TYPE",
        help="post a built-in sample of TYPE: an async action type (VOUCHERS.IMPORT) or a "
        "webhook event type (voucher.published); --list-samples lists them",
    )
    source.add_argument(
        "--list-samples", action="store_true", help="print the types --sample takes, then exit"
    )
    send.add_argument(
        "--status",
        default="DONE",
        choices=["ENQUEUED", "IN_PROGRESS", "DONE", "FAILED"],
        help="status of the sample (default DONE; ENQUEUED and IN_PROGRESS are progress)",
    )
    send.add_argument(
        "--count", type=flags.positive, default=1, help="how many to send (new ids each)"
    )
    send.add_argument(
        "--url", help="webhook URL (default: the local server's, or FANOUT_HOST and FANOUT_PORT)"
    )
    send.add_argument(
        "--secret", help="secret to sign with (default: FANOUT_SECRETS, else the local one)"
    )
    flags.add(send, ["--data-dir"])
    send.set_defaults(handler=cmd_send)


def _secret(args: argparse.Namespace, search: local.Search) -> bytes:
    if args.secret:
        return str(args.secret).encode()
    configured = discovery().secrets
    if configured:
        return configured[0].key
    folders = [search.server.data_dir] if search.server else [path.parent for path in search.looked]
    for folder in folders:
        path = folder / local.SECRET_FILE
        if path.exists():
            return path.read_text().strip().encode()
    where = ", ".join(str(folder / local.SECRET_FILE) for folder in folders)
    raise CommandError(
        f"no secret to sign with: --secret and FANOUT_SECRETS are not set and there is no "
        f"local secret (looked for {where}); run `fanout serve` first, point --data-dir "
        "(FANOUT_DATA_DIR) at its data folder, or pass --secret"
    )


def _url(args: argparse.Namespace, search: local.Search) -> tuple[str, str]:
    """The webhook URL and where it came from."""
    if args.url:
        return args.url, "from --url"
    found = discovery()
    host, port = found.host, found.port
    if host or port:
        url = f"http://{host or '127.0.0.1'}:{port or '8000'}/webhooks/voucherify"
        return url, "from FANOUT_HOST/FANOUT_PORT"
    if search.server is not None and search.server.webhook_url:
        return search.server.webhook_url, f"of {search.server.describe()}"
    return "http://127.0.0.1:8000/webhooks/voucherify", "(the default; no running server found)"


def _bodies(args: argparse.Namespace) -> list[bytes]:
    if args.file is not None:
        try:
            return [Path(args.file).read_bytes()] * args.count
        except OSError as exc:
            raise CommandError(f"cannot read {args.file}: {exc.strerror}") from None
    return [_sample(args.sample, args.status) for _ in range(args.count)]


def cmd_send(args: argparse.Namespace) -> int:
    if args.list_samples:  # the canonical spellings; --sample also takes the aliases
        print("\n".join(sample_bodies.TYPES))
        return 0
    logging.getLogger("httpx").setLevel(logging.WARNING)
    search = local.find_server(Path(args.data_dir) if args.data_dir else None)
    for note in search.notes:
        print(f"fanout: {note}", file=sys.stderr)
    key = _secret(args, search)
    url, source = _url(args, search)
    bodies = _bodies(args)
    print(f"fanout: posting to {url} {source}", file=sys.stderr, flush=True)
    failures = 0
    with httpx.Client(timeout=15) as client:
        for body in bodies:
            # The sender signs the compact form of the JSON, so do the same.
            signed = signature.compact(body) or body
            headers = {
                "content-type": "application/json",
                signature.HEADER: signature.sign(signed, key),
            }
            try:
                response = client.post(url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                hint = "" if search.server else " (is `fanout serve` running?)"
                raise CommandError(
                    f"cannot reach {url}: {exc or type(exc).__name__}{hint}"
                ) from None
            print(f"{response.status_code} {escape(response.content.decode(errors='replace'))}")
            letter = _dead_lettered(response)
            if letter is not None:
                print(f"fanout: {letter}", file=sys.stderr)
            failures += not response.is_success or letter is not None
    return 1 if failures else 0


def _dead_lettered(response: httpx.Response) -> str | None:
    """What to say about an answer that kept the body as a dead letter; None for others.

    A 2xx all the same (the sender must not retry it), but nothing was published."""
    try:
        answer = response.json()
    except ValueError:
        return None
    if not isinstance(answer, dict) or answer.get("status") != "dead_lettered":
        return None
    entry = escape(str(answer.get("dead_letter")))
    return (
        f"not published: kept as dead letter {entry} "
        f"({escape(str(answer.get('reason')))}: {escape(str(answer.get('detail')))}); "
        f"see `fanout dlq show {entry}`"
    )
