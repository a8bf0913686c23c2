"""A downstream project type-checks its consumer against the installed package.

mypy runs from this venv, outside the repository, so it finds ``service`` the
way another project would: installed, with ``py.typed``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import EXAMPLE

pytestmark = pytest.mark.spawns

MYPY = str(Path(sys.executable).parent / "mypy")

CONSUMER = """\
from service import CompletionEvent, Consumer, StreamEvent, WebhookEvent
from service.results import OrderImportResult, VoucherImportResult
from service.webhook_data import EventVoucherPublishedData


async def handle(event: StreamEvent) -> None:
    match event:
        case CompletionEvent(
            result=VoucherImportResult(failed=failed) | OrderImportResult(failed=failed)
        ):
            for record in failed or []:
                print(event.id, record.reason)
        case WebhookEvent(data=EventVoucherPublishedData() as data):
            print(event.id, data)
    if isinstance(event, CompletionEvent) and isinstance(event.result, VoucherImportResult):
        codes: list[str | None] = [record.code for record in event.result.failed or []]
        print(codes)


async def main() -> None:
    consumer = await Consumer.connect("billing", types=["VOUCHERS.IMPORT", "voucher.published"])
    try:
        await consumer.run(handle)
    finally:
        await consumer.aclose()
"""

# ``failed`` may be None: a checker that sees the real types says so.
CARELESS = """\
from service.results import VoucherImportResult


def count(result: VoucherImportResult) -> int:
    return sum(1 for _ in result.failed)
"""


def _mypy(folder: Path, *files: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MYPY, "--strict", "--cache-dir", str(folder / ".mypy_cache"), *files],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.timeout(240)
def test_a_consumer_loops_over_failed_under_mypy_strict(tmp_path: Path) -> None:
    (tmp_path / "consumer.py").write_text(CONSUMER)
    shutil.copy(EXAMPLE, tmp_path / "consume.py")
    (tmp_path / "careless.py").write_text(CARELESS)

    clean = _mypy(tmp_path, "consumer.py", "consume.py")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "Success: no issues found in 2 source files" in clean.stdout

    careless = _mypy(tmp_path, "careless.py")
    assert careless.returncode == 1
    assert 'Item "None" of "list[VoucherImportFailure] | None" has no attribute' in careless.stdout
