"""Which Redis a command or consumer uses when given none: ``service.streams.local``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from service.streams import local


def _record(data_dir: Path, **fields: object) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "redis_url": "unix:///x/valkey.sock"} | fields
    (data_dir / local.RECORD_NAME).write_text(json.dumps(record))


def test_an_explicit_url_wins_then_the_variable_then_the_record(tmp_path: Path) -> None:
    _record(tmp_path, stream_prefix="shop")
    env = {"FANOUT_REDIS_URL": "redis://env:6379/0"}
    explicit = local.find_redis("redis://flag:6379/0", data_dir=tmp_path, environ=env)
    assert (explicit.url, explicit.source) == ("redis://flag:6379/0", "from --redis-url")
    from_env = local.find_redis(None, data_dir=tmp_path, environ=env)
    assert (from_env.url, from_env.source) == ("redis://env:6379/0", "from FANOUT_REDIS_URL")
    recorded = local.find_redis(None, data_dir=tmp_path, environ={})
    assert recorded.url == "unix:///x/valkey.sock"
    assert recorded.stream_prefix == "shop"
    assert recorded.source.startswith(f"of the local `fanout serve` (pid {os.getpid()},")


def test_the_record_keeps_no_password_and_says_one_is_needed(tmp_path: Path) -> None:
    local.write(
        tmp_path,
        redis_url="redis://app:s3cret@db:6379/2",
        redis_cluster=False,
        stream_prefix="voucherify",
        webhook_url="http://127.0.0.1:8000/webhooks/voucherify",
        dashboard_url="http://127.0.0.1:8000/dashboard",
    )
    text = (tmp_path / local.RECORD_NAME).read_text()
    assert "s3cret" not in text and json.loads(text)["redis_url"] == "redis://app@db:6379/2"
    with pytest.raises(local.NoRedis, match=r"with a password.*set FANOUT_REDIS_URL"):
        local.find_redis(None, data_dir=tmp_path, environ={})
    local.remove(tmp_path)
    assert not (tmp_path / local.RECORD_NAME).exists()


def test_the_nearest_folder_with_a_record_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _record(tmp_path / ".fanout", redis_url="unix:///above.sock")
    below = tmp_path / "a" / "b"
    below.mkdir(parents=True)
    monkeypatch.chdir(below)
    assert local.find_redis(None, environ={}).url == "unix:///above.sock"
    _record(below / ".fanout", redis_url="unix:///here.sock")
    assert local.find_redis(None, environ={}).url == "unix:///here.sock"


def test_an_unreadable_record_is_ignored_and_named(tmp_path: Path) -> None:
    (tmp_path / local.RECORD_NAME).write_text("{not json")
    with pytest.raises(local.NoRedis, match=r"ignored .*server\.json: .* is not a server record"):
        local.find_redis(None, data_dir=tmp_path, environ={})


def test_a_second_claim_on_a_folder_is_refused_until_the_first_is_released(
    tmp_path: Path,
) -> None:
    first = local.Claim(tmp_path)
    with pytest.raises(local.AlreadyServing, match="already uses the data folder"):
        local.Claim(tmp_path)
    first.release()
    local.Claim(tmp_path).release()


def test_passwords_are_masked_and_removed() -> None:
    assert local.mask("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert local.without_password("redis://:pw@h:1/0") == ("redis://h:1/0", True)
    assert local.without_password("unix:///s.sock") == ("unix:///s.sock", False)


def test_a_recorded_password_file_gives_the_url_with_its_password(tmp_path: Path) -> None:
    kept = tmp_path / "redis-password"
    kept.write_text("s3cr/t\n")
    local.write(
        tmp_path,
        redis_url="redis://default:s3cr%2Ft@127.0.0.1:16379/0",
        redis_cluster=False,
        stream_prefix="voucherify",
        webhook_url="",
        dashboard_url="",
        redis_password_file=kept,
    )
    record = (tmp_path / local.RECORD_NAME).read_text()
    assert "s3cr" not in record, "the record names the file, never the password"
    assert (tmp_path / local.RECORD_NAME).stat().st_mode & 0o777 == 0o600
    found = local.find_redis(None, data_dir=tmp_path, environ={})
    assert found.url == "redis://default:s3cr%2Ft@127.0.0.1:16379/0"
    assert str(found).startswith("redis://default:***@127.0.0.1:16379/0 of the local")
    kept.unlink()
    with pytest.raises(local.NoRedis, match=r"keeps its Redis password in .*redis-password"):
        local.find_redis(None, data_dir=tmp_path, environ={})


def test_a_password_of_a_configured_url_is_not_recorded(tmp_path: Path) -> None:
    _record(tmp_path, redis_url="redis://db:6379/0", redis_password=True)
    with pytest.raises(local.NoRedis, match="which its record does not keep: set FANOUT_REDIS_URL"):
        local.find_redis(None, data_dir=tmp_path, environ={})


def test_a_password_goes_in_for_the_default_user_or_the_given_one() -> None:
    assert local.with_password("redis://h:1/0", "p w") == "redis://default:p%20w@h:1/0"
    assert local.with_password("redis://alice@h:1/0", "x") == "redis://alice:x@h:1/0"
