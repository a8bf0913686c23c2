"""The public surface is pinned: ``service.__all__`` lists exactly the package's public names."""

from __future__ import annotations

import subprocess
import sys

import service


def test_all_lists_every_public_name_and_only_those() -> None:
    exported = set(service.__all__)
    public = {
        name
        for name in vars(service)
        if not name.startswith("_") and not isinstance(getattr(service, name), type(service))
    }
    assert exported == public | {"__version__"}
    assert len(service.__all__) == len(exported), "no name listed twice"
    for name in exported:
        assert getattr(service, name) is not None


def test_the_downstream_api_is_there() -> None:
    assert {"Consumer", "decode_event", "CompletionEvent", "VoucherImportResult"} <= set(
        service.__all__
    )
    webhook_api = {"WebhookEvent", "WebhookData", "WebhookSource", "StreamEvent"}
    assert webhook_api | {"WEBHOOK_BY_TYPE"} <= set(service.__all__)


def test_every_webhook_data_struct_is_exported() -> None:
    assert len(service.WEBHOOK_BY_TYPE) == 72
    for struct in service.WEBHOOK_BY_TYPE.values():
        assert getattr(service, struct.__name__) is struct


def test_importing_the_consumer_api_loads_no_server_framework() -> None:
    code = (
        "import sys\n"
        "from service import Consumer, decode_event\n"
        "heavy = ('starlette', 'uvicorn', 'prometheus_client', 'rich')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == ""
