"""Webhook secrets: bound to projects, read from a file, read again on SIGHUP."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from pathlib import Path

import pytest

from service.config import ConfigError, Secret, Settings, read_secrets_file, webhook_secrets
from service.domain import samples
from tests.support.http import post, serving


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
