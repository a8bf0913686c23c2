"""Who may use /dashboard, over a real uvicorn: a token always, its own Host, same-origin writes.

The browser's view of the same rules is in test_dashboard.py; ``fanout serve``'s
generated token in tests/cli/test_dashboard_access.py.
"""

from __future__ import annotations

import dataclasses
import ipaddress

import httpx
import pytest
from redis.asyncio import Redis

from service.cli.factory import build
from service.config import Secret, Settings
from service.domain import samples
from service.streams.keys import Keys
from tests.support.feed import fixable_letter
from tests.support.http import post, serving
from tests.support.servers import running_uvicorn

TOKEN = "admin-token-0123456789"
BEARER = {"authorization": f"Bearer {TOKEN}"}
COOKIE = {"cookie": f"fanout_admin={TOKEN}"}
DASHBOARD_PATHS = [
    "/dashboard",
    "/dashboard/snapshot",
    "/dashboard/events",
    "/dashboard/static/dashboard.js",
    "/dashboard/no-such-page",
]


@pytest.fixture
def guarded(settings: Settings) -> Settings:
    return dataclasses.replace(settings, admin_token=Secret(TOKEN))


def port_of(http: httpx.AsyncClient) -> int:
    port = http.base_url.port
    assert port is not None
    return port


async def test_without_an_admin_token_nothing_under_dashboard_answers(settings: Settings) -> None:
    # create_app with no token: refused from loopback, whatever the request claims.
    assert settings.admin_token is None
    async with serving(settings) as http:
        for path in DASHBOARD_PATHS:
            for headers in ({}, BEARER, COOKIE, {"x-forwarded-for": "127.0.0.1"}):
                answer = await http.get(path, headers=headers)
                assert answer.status_code == 401, (path, headers)
                assert answer.json()["error"] == "unauthorized"
                assert "set FANOUT_ADMIN_TOKEN" in answer.json()["detail"]
        replay = await http.post("/dashboard/dead-letters/1-0/replay", headers=BEARER)
        assert replay.status_code == 401
        # Everything else is as open as before.
        assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 202
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await http.get(path)).status_code == 200, path


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer wrong-token-0123456789"}, {"cookie": "fanout_admin=nope"}],
    ids=["nothing", "wrong bearer", "wrong cookie"],
)
async def test_loopback_without_the_token_is_refused(
    guarded: Settings, headers: dict[str, str]
) -> None:
    # The peer is 127.0.0.1, as it is behind a same-host proxy or a mesh sidecar.
    async with serving(guarded) as http:
        for path in DASHBOARD_PATHS:
            answer = await http.get(path, headers=headers)
            assert answer.status_code == 401, path
            assert answer.headers["www-authenticate"].startswith("Bearer")
            assert answer.headers["cache-control"] == "no-store"
        assert (await http.get("/dashboard?token=nope")).status_code == 401


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:{port}",  # a page that DNS-rebinds its name to this server
        "127.0.0.1.evil.example:{port}",
        "localhost:1",
        "127.0.0.1:{port}@evil.example",
        "",
    ],
)
async def test_a_foreign_host_is_refused_even_with_the_token(guarded: Settings, host: str) -> None:
    async with serving(guarded) as http:
        value = host.format(port=port_of(http))
        for path in DASHBOARD_PATHS[:4]:
            answer = await http.get(path, headers={**BEARER, "host": value})
            assert answer.status_code == 403, path
            assert "FANOUT_ALLOWED_HOSTS" in answer.json()["detail"]
        # Control: the address the server was reached at, with the same token.
        assert (await http.get("/dashboard/snapshot", headers=BEARER)).status_code == 200


async def test_the_host_check_is_for_the_dashboard_only(guarded: Settings) -> None:
    # Webhook senders behind proxies, probes and scrapers use any Host they like.
    async with serving(guarded) as http:
        evil = {"host": "evil.example"}
        assert (await post(http, samples.sample("ORDERS.IMPORT"), **evil)).status_code == 202
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await http.get(path, headers=evil)).status_code == 200, path


async def test_allowed_hosts_replace_the_default_names(guarded: Settings) -> None:
    configured = dataclasses.replace(guarded, allowed_hosts=("fanout.example.com", "ops:9000"))
    async with serving(configured) as http:
        port = port_of(http)
        answers = {
            host: (
                await http.get("/dashboard/snapshot", headers={**BEARER, "host": host})
            ).status_code
            for host in (
                "fanout.example.com",
                "FANOUT.example.com:8443",  # an entry without a port allows any port
                "ops:9000",
                "ops:9001",
                f"localhost:{port}",
                f"127.0.0.1:{port}",  # the address the connection arrived at, always
            )
        }
    assert answers == {
        "fanout.example.com": 200,
        "FANOUT.example.com:8443": 200,
        "ops:9000": 200,
        "ops:9001": 403,
        f"localhost:{port}": 403,
        f"127.0.0.1:{port}": 200,
    }


@pytest.mark.parametrize(
    "headers",
    [
        {"origin": "https://evil.example"},
        {"origin": "https://evil.example", "sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "cross-site"},
        # Another app on this machine is the same site (cookies ignore ports).
        {"origin": "http://127.0.0.1:1", "sec-fetch-site": "same-site"},
        {"origin": "null"},
        {},  # the cookie alone, no sign of where the request came from
    ],
    ids=["origin", "origin and fetch site", "fetch site", "same site", "null", "neither"],
)
async def test_a_cross_site_post_is_refused_even_with_the_cookie(
    guarded: Settings, redis: Redis, keys: Keys, headers: dict[str, str]
) -> None:
    letter, _ = await fixable_letter(redis, keys)
    async with serving(guarded) as http:
        answer = await http.post(
            f"/dashboard/dead-letters/{letter}/replay", headers={**COOKIE, **headers}
        )
    assert answer.status_code == 403
    assert answer.json()["error"] == "forbidden"
    assert await redis.xlen(keys.dead_letters()) == 1, "the letter is untouched"
    assert await redis.xlen(keys.completed("VOUCHERS.IMPORT")) == 0


async def test_a_foreign_origin_is_refused_with_the_bearer_token_too(
    guarded: Settings, redis: Redis, keys: Keys
) -> None:
    letter, _ = await fixable_letter(redis, keys)
    async with serving(guarded) as http:
        answer = await http.post(
            f"/dashboard/dead-letters/{letter}/replay",
            headers={**BEARER, "origin": "https://evil.example"},
        )
    assert answer.status_code == 403


async def test_same_origin_posts_and_bearer_clients_may_replay(
    guarded: Settings, redis: Redis, keys: Keys
) -> None:
    from_page, _ = await fixable_letter(redis, keys)
    from_curl, _ = await fixable_letter(redis, keys)
    async with serving(guarded) as http:
        base = str(http.base_url).rstrip("/")
        page = await http.post(
            f"/dashboard/dead-letters/{from_page}/replay",
            headers={**COOKIE, "origin": base, "sec-fetch-site": "same-origin"},
        )
        # A non-browser client sends neither header; the bearer token says it is no CSRF.
        curl = await http.post(f"/dashboard/dead-letters/{from_curl}/replay", headers=BEARER)
    assert (page.status_code, page.json()["replayed"]) == (200, True)
    assert (curl.status_code, curl.json()["replayed"]) == (200, True)
    assert await redis.xlen(keys.dead_letters()) == 0


async def test_behind_a_proxy_that_rewrites_host_the_public_origin_is_allowed_when_listed(
    guarded: Settings, redis: Redis, keys: Keys
) -> None:
    # nginx's default proxy_pass sends Host: 127.0.0.1:<port>; the browser's Origin
    # is the public name, which the operator lists in FANOUT_ALLOWED_HOSTS.
    letter, _ = await fixable_letter(redis, keys)
    public = {**COOKIE, "origin": "https://fanout.example.com"}
    path = f"/dashboard/dead-letters/{letter}/replay"
    async with serving(guarded) as http:
        unlisted = await http.post(path, headers=public)
    listed = dataclasses.replace(guarded, allowed_hosts=("fanout.example.com", "127.0.0.1"))
    async with serving(listed) as http:
        accepted = await http.post(path, headers=public)
    assert unlisted.status_code == 403
    assert accepted.status_code == 200


async def test_the_cookie_is_httponly_strict_and_scoped_to_the_dashboard(
    guarded: Settings,
) -> None:
    async with serving(guarded) as http:
        answer = await http.get(f"/dashboard?token={TOKEN}")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard"
    attributes = [part.strip().lower() for part in answer.headers["set-cookie"].split(";")]
    assert attributes[0] == f"fanout_admin={TOKEN}".lower()
    assert {"httponly", "samesite=strict", "path=/dashboard"} <= set(attributes)
    assert "secure" not in attributes  # plain http: a Secure cookie would never come back


@pytest.mark.parametrize(("trusted", "secure"), [(True, True), (False, False)])
async def test_the_cookie_is_secure_when_a_trusted_proxy_says_https(
    guarded: Settings, trusted: bool, secure: bool
) -> None:
    proxies = (ipaddress.ip_network("127.0.0.1/32"),) if trusted else ()
    own = dataclasses.replace(guarded, trusted_proxies=proxies)
    async with (
        running_uvicorn(build(own)) as base_url,
        httpx.AsyncClient(base_url=base_url) as http,
    ):
        answer = await http.get(f"/dashboard?token={TOKEN}", headers={"x-forwarded-proto": "https"})
    assert answer.status_code == 303
    attributes = [part.strip().lower() for part in answer.headers["set-cookie"].split(";")]
    assert ("secure" in attributes) is secure
