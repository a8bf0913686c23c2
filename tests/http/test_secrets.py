"""Webhook secrets: bound to projects, read from a file, read again on SIGHUP."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from pathlib import Path

import msgspec
import pytest
from redis.asyncio import Redis

from service.config import ConfigError, Secret, Settings, read_secrets_file, webhook_secrets
from service.domain import samples
from service.domain.webhook_samples import envelope
from service.streams.keys import Keys
from service.streams.replay import Replayer
from tests.http.test_metrics import scrape, value
from tests.support.http import dead_lettered, post, serving


def test_a_proj_entry_binds_its_secret_to_that_project() -> None:
    settings = Settings.from_env({"FANOUT_SECRETS": "plain-1, proj_A1b2=s-a ,proj_B=s=b=="})
    assert settings.secrets == (
        Secret("plain-1"),
        Secret("s-a", "proj_A1b2"),
        Secret("s=b==", "proj_B"),  # only the first = after a project id separates
    )
    # A secret with = of its own that does not start with a project id stays plain.
    assert Settings.from_env({"FANOUT_SECRETS": "abc=def"}).secrets == (Secret("abc=def"),)
    assert "s-a" not in repr(settings.secrets)


def test_one_secret_for_two_projects_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"FANOUT_SECRETS: the same secret is given for proj_A"):
        Settings.from_env({"FANOUT_SECRETS": "proj_A=s1,proj_B=s1"})
    with pytest.raises(ConfigError, match="any project and proj_A"):
        Settings.from_env({"FANOUT_SECRETS": "s1,proj_A=s1"})


def test_a_secrets_file_one_entry_a_line_with_comments(tmp_path: Path) -> None:
    path = tmp_path / "secrets"
    path.write_text("# staging and production\nproj_S=s-staging\n\n  proj_P=s-prod , legacy\n")
    assert read_secrets_file(path) == (
        Secret("s-staging", "proj_S"),
        Secret("s-prod", "proj_P"),
        Secret("legacy"),
    )
    settings = Settings.from_env({"FANOUT_SECRETS": "env-1", "FANOUT_SECRETS_FILE": str(path)})
    assert settings.secrets_file == path
    assert [s.reveal() for s in webhook_secrets(settings)] == [
        "env-1",
        "s-staging",
        "s-prod",
        "legacy",
    ]


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "cannot read"), ("# nothing\n\n", "holds no secret"), (b"\xff\xfe", "not UTF-8")],
)
def test_a_bad_secrets_file_is_one_line_naming_it(
    tmp_path: Path, content: str | bytes | None, problem: str
) -> None:
    path = tmp_path / "secrets"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=f"FANOUT_SECRETS_FILE: .*{problem}"):
        read_secrets_file(path)


async def test_sighup_reads_the_file_again_and_a_bad_file_changes_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    path = tmp_path / "secrets"
    path.write_text("proj_5T4Rpl4T1nuM=old-secret\n")
    own = dataclasses.replace(settings, secrets=(), secrets_file=path)
    async with serving(own) as http:
        action = samples.sample("VOUCHERS.IMPORT")
        assert (await post(http, action, secret="old-secret")).status_code == 202
        assert (await post(http, action, secret="new-secret")).status_code == 401

        path.write_text("new-secret\n")
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.2)  # the loop runs the handler on its next turn
        fresh = samples.sample("VOUCHERS.IMPORT")
        assert (await post(http, fresh, secret="new-secret")).status_code == 202
        assert (await post(http, fresh, secret="old-secret")).status_code == 401

        path.write_text("# emptied by mistake\n")
        os.kill(os.getpid(), signal.SIGHUP)
        await asyncio.sleep(0.2)
        again = samples.sample("VOUCHERS.IMPORT")
        assert (await post(http, again, secret="new-secret")).status_code == 202


async def test_a_bound_secret_holds_envelopes_to_its_project(
    settings: Settings, redis: Redis, keys: Keys
) -> None:
    bound = dataclasses.replace(
        settings, secrets=(Secret("s-staging", "proj_STAGE"), Secret("s-any"))
    )
    async with serving(bound) as http:
        before = await scrape(http)
        # Production's event, signed with staging's secret: kept, never published.
        claims_prod = envelope("voucher.published") | {"project_id": "proj_PROD"}
        body = msgspec.json.encode(claims_prod)
        first = await post(http, body, secret="s-staging")
        letter = await dead_lettered(first, redis, keys, body, "project_mismatch")
        assert letter["detail"] == (
            "signed with the secret bound to proj_STAGE, but the envelope claims "
            "'proj_PROD' - at `$.project_id`"
        )
        again = await post(http, body, secret="s-staging")  # a retry: the same letter
        assert again.json()["dead_letter"] == first.json()["dead_letter"]
        no_project = envelope("voucher.published")
        del no_project["project_id"]
        missing = await post(http, no_project, secret="s-staging")
        assert missing.json()["reason"] == "project_mismatch"
        assert await redis.exists(keys.events("voucher.published")) == 0

        # Its own project's event, a plain secret for any project, an async action.
        own = envelope("voucher.published") | {"project_id": "proj_STAGE"}
        assert (await post(http, own, secret="s-staging")).status_code == 202
        assert (await post(http, claims_prod, secret="s-any")).status_code == 202
        action = samples.sample("VOUCHERS.IMPORT")
        assert (await post(http, action, secret="s-staging")).status_code == 202
        values = await scrape(http)
    [(_, first_entry), (_, second)] = await redis.xrange(keys.events("voucher.published"))
    assert (first_entry[b"project_id"], second[b"project_id"]) == (b"proj_STAGE", b"proj_PROD")

    def delta(name: str, **labels: str) -> float:
        return value(values, name, **labels) - value(before, name, **labels)

    assert delta("fanout_dead_letters_total", reason="project_mismatch") == 2
    assert delta("fanout_deliveries_total", type="other", outcome="dead_lettered") == 3

    # Published on purpose: the operator replays a letter (`fanout dlq replay`).
    replayed = await Replayer(redis, bound).replay(missing.json()["dead_letter"])
    assert replayed.outcome == "accepted"
    assert await redis.xlen(keys.events("voucher.published")) == 3
