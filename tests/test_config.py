"""Settings from the environment: defaults, every variable, and one-line errors."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from pathlib import Path
from typing import Any

import pytest

from service.config import (
    ConfigError,
    Durability,
    PollSettings,
    Secret,
    SentinelTarget,
    Settings,
    discovery,
    to_env,
    variables,
)
from service.streams import local


def test_defaults_match_the_contract() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url is None
    assert settings.redis_cluster is False
    assert settings.secrets == ()
    assert settings.stream_prefix == "voucherify"
    assert settings.dedup_ttl == 604_800
    assert settings.stream_maxlen == 1_000_000
    assert settings.max_body_bytes == 1_048_576
    assert settings.allow_ips is None
    assert settings.durability == Durability("auto")  # issue 13: durable by default
    assert settings.data_dir == Path(".fanout")
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.cloudevents is False


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "FANOUT_REDIS_URL": "rediss://cache:6380/1",
            "FANOUT_REDIS_CLUSTER": "1",
            "FANOUT_SECRETS": "new, old",
            "FANOUT_STREAM_PREFIX": "vf",
            "FANOUT_DEDUP_TTL": "60",
            "FANOUT_STREAM_MAXLEN": "1000",
            "FANOUT_MAX_BODY_BYTES": "4096",
            "FANOUT_ALLOW_IPS": "10.0.0.0/8, 2001:db8::/32",
            "FANOUT_DURABILITY": "replicas:2",
            "FANOUT_DATA_DIR": "/var/lib/fanout",
            "FANOUT_HOST": "0.0.0.0",
            "FANOUT_PORT": "9000",
            "FANOUT_CLOUDEVENTS": "1",
        }
    )
    assert settings.redis_url == "rediss://cache:6380/1"
    assert settings.redis_cluster is True
    assert [s.reveal() for s in settings.secrets] == ["new", "old"]
    assert settings.stream_prefix == "vf"
    assert (settings.dedup_ttl, settings.stream_maxlen, settings.max_body_bytes) == (60, 1000, 4096)
    assert settings.allow_ips == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
    )
    assert settings.durability == Durability("replicas", 2)
    assert settings.data_dir == Path("/var/lib/fanout")
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert settings.cloudevents is True


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("FANOUT_REDIS_URL", "http://localhost"),
        ("FANOUT_REDIS_URL", "redis+sentinel://sentinel/mymaster"),
        ("FANOUT_REDIS_URL", "redis+sentinel://sentinel:26379"),
        ("FANOUT_REDIS_CLUSTER", "maybe"),
        ("FANOUT_CLOUDEVENTS", "on"),
        ("FANOUT_SECRETS", "a,,b"),
        ("FANOUT_STREAM_PREFIX", "a{b}"),
        ("FANOUT_DEDUP_TTL", "-1"),
        ("FANOUT_DEDUP_TTL", "a week"),
        ("FANOUT_STREAM_MAXLEN", "0"),
        ("FANOUT_MAX_BODY_BYTES", "1e6"),
        ("FANOUT_ALLOW_IPS", "10.0.0.0/8,not-an-ip"),
        ("FANOUT_DURABILITY", "fsync"),
        ("FANOUT_DURABILITY", "replicas:0"),
        ("FANOUT_PORT", "70000"),
        ("FANOUT_REDIS_TIMEOUT", "0"),
        ("FANOUT_ALLOWED_HOSTS", "https://fanout.example.com"),
        ("FANOUT_ALLOWED_HOSTS", "fanout.example.com,,localhost"),
        ("FANOUT_ALLOWED_HOSTS", "localhost:http"),
        ("FANOUT_ALLOWED_HOSTS", "fanout.example.com/dashboard"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        Settings.from_env({variable: value})
    message = str(error.value)
    assert message.startswith(f"{variable}: ")
    assert "\n" not in message


def test_secrets_never_print() -> None:
    settings = Settings.from_env({"FANOUT_SECRETS": "hunter2"})
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.secrets[0])
    assert settings.secrets[0] == Secret("hunter2")
    assert settings.secrets[0].key == b"hunter2"


def test_trusted_proxies_are_cidrs_and_a_bad_one_names_the_variable() -> None:
    settings = Settings.from_env({"FANOUT_TRUSTED_PROXIES": "10.0.0.0/8, 2001:db8::/32"})
    assert [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8", "2001:db8::/32"]
    assert Settings.from_env({}).trusted_proxies == ()
    with pytest.raises(ConfigError, match=r"^FANOUT_TRUSTED_PROXIES: "):
        Settings.from_env({"FANOUT_TRUSTED_PROXIES": "10.0.0.0/8,proxy.local"})


def test_dashboard_hosts_default_to_the_listen_address_and_loopback_names() -> None:
    assert Settings.from_env({}).dashboard_hosts() == (
        "127.0.0.1:8000",
        "localhost:8000",
        "[::1]:8000",
    )
    listening = Settings.from_env({"FANOUT_HOST": "Fanout.Local", "FANOUT_PORT": "9000"})
    assert listening.dashboard_hosts() == (
        "fanout.local:9000",
        "localhost:9000",
        "127.0.0.1:9000",
        "[::1]:9000",
    )
    assert Settings(host="::", port=80).dashboard_hosts()[0] == "[::]:80"


def test_allowed_hosts_replace_the_default() -> None:
    settings = Settings.from_env(
        {"FANOUT_ALLOWED_HOSTS": "Fanout.example.com, [::1]:8000, 10.0.0.5:8000, *"}
    )
    assert settings.dashboard_hosts() == (
        "fanout.example.com",
        "[::1]:8000",
        "10.0.0.5:8000",
        "*",
    )


@pytest.mark.parametrize(
    ("value", "durability"),
    [
        ("auto", Durability("auto")),
        ("none", Durability("none")),
        ("aof", Durability("aof")),
        ("replicas:1", Durability("replicas", 1)),
    ],
)
def test_durability_modes(value: str, durability: Durability) -> None:
    assert Settings.from_env({"FANOUT_DURABILITY": value}).durability == durability
    assert str(durability) == value


def test_a_sentinel_url_names_the_sentinels_and_the_master() -> None:
    url = "redis+sentinel://:pw@s1:26379,s2:26380/mymaster/2?sentinel_password=sp"
    assert Settings.from_env({"FANOUT_REDIS_URL": url}).redis_url == url
    target = SentinelTarget.parse(url)
    assert target.sentinels == (("s1", 26379), ("s2", 26380))
    assert (target.master, target.db, target.password) == ("mymaster", 2, "pw")
    assert target.sentinel_password == "sp"
    with pytest.raises(ConfigError, match=r"^FANOUT_REDIS_CLUSTER: "):
        Settings.from_env({"FANOUT_REDIS_URL": url, "FANOUT_REDIS_CLUSTER": "1"})


#: A value other than the default for every field: a field added to ``Settings``
#: without one here fails ``test_settings_travel_whole`` (and one without its
#: variable fails ``to_env``).
NON_DEFAULT: dict[str, object] = {
    "redis_url": "rediss://:pw@cache:6380/1",
    "redis_cluster": True,
    "secrets": (Secret("new"), Secret("old", "proj_5T4Rpl4T1nuM")),
    "secrets_file": Path("/run/secrets/voucherify-webhooks"),
    "stream_prefix": "vf",
    "dedup_ttl": 60,
    "max_age": 45,
    "stream_maxlen": 1000,
    "max_body_bytes": 4096,
    "allow_ips": (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32")),
    "trusted_proxies": (ipaddress.ip_network("192.168.0.0/16"),),
    "durability": Durability("replicas", 2),
    "data_dir": Path("/var/lib/fanout"),
    "host": "0.0.0.0",
    "port": 9000,
    "redis_timeout": 0.25,
    "admin_token": Secret("an-admin-token-of-some-length"),
    "allowed_hosts": ("fanout.example.com", "[::1]:9000", "*"),
    "cloudevents": True,
    "tracing": True,
    "log_level": "debug",
    "log_format": "json",
    "max_head_bytes": 65_536,
    "head_timeout": 2.5,
    "body_timeout": 30.0,
    "keep_alive_timeout": 75,
    "max_connections": 100,
    "allow_eviction": True,
    "memory_limit": 75,
    "retention": 86_400,
}
POLL_NON_DEFAULT: dict[str, object] = {
    "api_url": "https://us1.api.voucherify.io",
    "app_id": "app-1",
    "app_token": Secret("token-1"),
    "enabled": True,
    "interval": 5.5,
    "rate": 2.0,
    "page_size": 20,
    "timeout": 3.0,
}


@pytest.mark.parametrize(
    ("cls", "values"), [(Settings, NON_DEFAULT), (PollSettings, POLL_NON_DEFAULT)]
)
def test_settings_travel_whole(cls: type[Any], values: dict[str, object]) -> None:
    """``from_env(to_env(s)) == s`` for each field set apart from its default, and all."""
    assert set(values) == {f.name for f in dataclasses.fields(cls)}, "a field has no sample"
    default = cls()
    for name, value in values.items():
        assert getattr(default, name) != value, name
        one = dataclasses.replace(default, **{name: value})
        assert cls.from_env(to_env(one)) == one, name
    every = cls(**values)
    assert cls.from_env(to_env(every)) == every
    assert cls.from_env(to_env(default)) == default
    # Every variable is written, empty for None: a worker never inherits a stale one.
    assert set(to_env(default)) == {v.name for v in variables(cls).values()}


def test_the_environment_is_read_in_config_only() -> None:
    """Besides ``config/settings.py``: the documented exceptions of its docstring, no more."""
    exceptions = {
        "metrics.py": "PROMETHEUS_MULTIPROC_DIR",  # prometheus_client's own variable
        "cli/render.py": "COLUMNS",  # the terminal's width
        "tracing/sdk.py": "OTEL_TRACES_EXPORTER",  # OpenTelemetry's own variables
        "testing/plugin.py": "FANOUT_TEST_REDIS_URL",  # a test run's, for the pytest plugin
    }
    package = Path(__file__).parent.parent / "service"
    readers = {}
    for path in package.rglob("*.py"):
        text = path.read_text()
        if re.search(r"\bos\.environ\b|\bgetenv\b|\benviron\.get\b", text):
            readers[path.relative_to(package).as_posix()] = text
    assert set(readers) == {"config/settings.py", *exceptions}
    for name, variable in exceptions.items():
        assert variable in readers[name]
        assert variable in (package / "config" / "settings.py").read_text()


def test_discovery_refuses_a_bad_value_as_settings_do(tmp_path: Path) -> None:
    # streams/local.py took "maybe" for false; config refused it.
    with pytest.raises(ConfigError, match=r"^FANOUT_REDIS_CLUSTER: "):
        local.find_redis(
            "redis://flag:6379/0", data_dir=tmp_path, environ={"FANOUT_REDIS_CLUSTER": "maybe"}
        )
    found = discovery({"FANOUT_REDIS_CLUSTER": "yes", "FANOUT_STREAM_PREFIX": " vf "})
    assert (found.redis_cluster, found.stream_prefix, found.redis_url) == (True, "vf", None)


def test_max_age_defaults_to_the_dedup_window() -> None:
    assert Settings.from_env({"FANOUT_DEDUP_TTL": "60"}).age_limit() == 60
    assert Settings.from_env({"FANOUT_DEDUP_TTL": "60", "FANOUT_MAX_AGE": "30"}).age_limit() == 30
    with pytest.raises(ConfigError, match="FANOUT_MAX_AGE: expected a positive integer"):
        Settings.from_env({"FANOUT_MAX_AGE": "0"})
