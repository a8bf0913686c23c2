"""The deployment files against the running service.

The Grafana dashboard and the alert rules name metrics; each name must be one
that a real ``/metrics`` scrape carries, so renaming a metric in the code fails
here instead of leaving an empty panel or an alert that can never fire.
The schemas and syntax of these files are checked by ``scripts/check-deploy``.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from packaging.requirements import Requirement
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis

from service.config import Settings
from service.domain import samples
from service.domain.webhook_samples import envelope
from service.streams.keys import Keys
from tests.support.cli import clean_env, run
from tests.support.http import post, serving

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "fanout.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"

# Series that Prometheus itself adds to every scrape, and the target labels it attaches.
PROMETHEUS_SERIES = {"up"}
TARGET_LABELS = {"job", "instance"}

PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset",
}  # fmt: skip

Scrape = dict[str, set[str]]  # series name -> label names seen on it


# --- reading the files ---------------------------------------------------------


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard: panel targets and variable queries."""
    queries = [
        target["expr"]
        for panel in _panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            # Grafana's label_values(metric, label) is not PromQL: keep its selector.
            match = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\s*\)\s*", text)
            queries.append(match.group(1) if match else text)
    return queries


def alert_queries(rules: dict[str, Any]) -> list[str]:
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


# --- reading PromQL, as far as these files use it --------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENT = re.compile(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()")


def metric_names(expr: str) -> set[str]:
    """Metric names of an expression: identifiers that are not functions, keywords or labels."""
    text = re.sub(r"\{[^}]*\}", " ", _STRING.sub('""', expr))  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # range durations, $__rate_interval
    text = _GROUPING.sub(" ", text)  # by (label, ...)
    return {name for name in _IDENT.findall(text) if name not in PROMQL_WORDS}


def label_names(expr: str) -> dict[str | None, set[str]]:
    """Labels an expression relies on: per selector's metric, and (key None) in groupings."""
    text = _STRING.sub('""', expr)
    labels: dict[str | None, set[str]] = {}
    for name, matchers in _SELECTOR.findall(text):
        labels.setdefault(name, set()).update(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", matchers))
    for _, names in _GROUPING.findall(text):
        labels.setdefault(None, set()).update(n.strip() for n in names.split(",") if n.strip())
    return labels


def problems(queries: list[str], scrape: Scrape) -> list[str]:
    """What in ``queries`` the scrape does not carry; empty when every name is served."""
    found = []
    for expr in queries:
        names = metric_names(expr)
        if not names:
            found.append(f"no metric in {expr!r}")
        served = set(TARGET_LABELS)
        for name in sorted(names):
            if name in PROMETHEUS_SERIES:
                continue
            if name not in scrape:
                found.append(f"{name} is not in /metrics (in {expr!r})")
            else:
                served |= scrape[name]
        for name, labels in label_names(expr).items():
            if name in PROMETHEUS_SERIES:
                continue
            have = served if name is None else scrape.get(name, set()) | TARGET_LABELS
            for label in sorted(labels - have):
                found.append(f"label {label} is not on {name or 'these metrics'} in {expr!r}")
    return found


# --- a real scrape ----------------------------------------------------------------


async def scrape_with_every_series(settings: Settings, redis: Redis, keys: Keys) -> Scrape:
    """Scrape a running service after deliveries that make every labelled series appear."""
    async with serving(settings) as http:
        await _deliver(http)
        # A consumer group, so that the pending and lag gauges have a series.
        stream = keys.completed("ORDERS.IMPORT")
        await redis.xgroup_create(stream, "deploy-check", id="0")
        await redis.xreadgroup("deploy-check", "worker", {stream: ">"}, count=1)
        response = await http.get("/metrics")
    assert response.status_code == 200
    scrape: Scrape = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            scrape.setdefault(sample.name, set()).update(sample.labels)
    return scrape


async def _deliver(http: httpx.AsyncClient) -> None:
    assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 202
    assert (await post(http, samples.sample("ORDERS.IMPORT"))).status_code == 202
    failed = samples.sample("CUSTOMERS.IMPORT_CSV", status="FAILED")  # with failed records
    assert (await post(http, failed)).status_code == 202
    assert (await post(http, failed)).status_code == 200  # duplicate
    progress = samples.sample("VOUCHERS.IMPORT", status="IN_PROGRESS", progress=40)
    assert (await post(http, progress)).status_code == 202
    invalid = samples.sample("ORDERS.IMPORT") | {"progress": "half"}
    assert (await post(http, invalid)).json()["status"] == "dead_lettered"
    drift = envelope("voucher.teleported", {"x": 1})  # a webhook event off any schema
    assert (await post(http, drift)).status_code == 202


@pytest.fixture
async def scrape(settings: Settings, redis: Redis, keys: Keys) -> Scrape:
    return await scrape_with_every_series(settings, redis, keys)


async def test_dashboard_queries_only_metrics_the_service_serves(scrape: Scrape) -> None:
    queries = dashboard_queries(json.loads(DASHBOARD.read_text()))
    assert len(queries) >= 12
    found = problems(queries, scrape)
    assert not found, "deploy/grafana/fanout.json:\n" + "\n".join(found)


async def test_alert_rules_query_only_metrics_the_service_serves(scrape: Scrape) -> None:
    queries = alert_queries(yaml.safe_load(ALERTS.read_text()))
    assert len(queries) >= 5
    found = problems(queries, scrape)
    assert not found, "deploy/prometheus/alerts.yml:\n" + "\n".join(found)


async def test_every_metric_of_the_service_is_on_the_dashboard(scrape: Scrape) -> None:
    shown = {
        name
        for q in dashboard_queries(json.loads(DASHBOARD.read_text()))
        for name in metric_names(q)
    }
    families = {re.sub(r"_(total|created|bucket|sum|count)$", "", name) for name in scrape}
    shown_families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in shown}
    missing = {f for f in families if f.startswith("fanout_")} - shown_families
    assert not missing, f"metrics without a panel in deploy/grafana/fanout.json: {missing}"


async def test_a_renamed_metric_is_reported(scrape: Scrape) -> None:
    # The check itself can fail: on a name the code does not serve (as after a
    # rename in service/metrics.py), and on a label the metric does not carry.
    renamed = 'max by (stream, group) (fanout_group_lagging{job="fanout"})'
    assert problems([renamed], scrape) == [
        f"fanout_group_lagging is not in /metrics (in {renamed!r})",
        f"label group is not on these metrics in {renamed!r}",
        f"label stream is not on these metrics in {renamed!r}",
    ]
    relabelled = 'sum(rate(fanout_deliveries_total{result="unavailable"}[5m]))'
    assert problems([relabelled], scrape) == [
        f"label result is not on fanout_deliveries_total in {relabelled!r}"
    ]
    # Histogram series are compared by their full names.
    assert "fanout_request_duration_seconds_bucket" in scrape
    unsuffixed = "histogram_quantile(0.99, sum by (le) (rate(fanout_request_duration_seconds[5m])))"
    assert problems([unsuffixed], scrape)[0].startswith("fanout_request_duration_seconds is not")


def test_promql_reading() -> None:
    expr = (
        'sum(increase(fanout_deliveries_total{outcome="accepted"}[2h])) > 0 and on () '
        "(sum by (status) (increase(fanout_completions_total[$__rate_interval])) "
        "or on () vector(0)) == 0"
    )
    assert metric_names(expr) == {"fanout_deliveries_total", "fanout_completions_total"}
    assert label_names(expr) == {"fanout_deliveries_total": {"outcome"}, None: {"status"}}
    assert metric_names('up{job="fanout"} == 0 or absent(up{job="fanout"})') == {"up"}


# --- the image's pins and the variables the files set ------------------------------


def _lock() -> dict[str, Requirement]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            requirement = Requirement(line)
            assert [s.operator for s in requirement.specifier] == ["=="], (
                f"requirements.lock: {line!r} is not pinned with =="
            )
            pins[_normal(requirement.name)] = requirement
    return pins


def test_requirements_lock_pins_every_runtime_dependency() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {name: next(iter(r.specifier)).version for name, r in _lock().items()}
    for dependency in project["dependencies"]:
        requirement = Requirement(dependency)
        name = _normal(requirement.name)
        assert name in pins, f"{requirement.name} is missing from requirements.lock (make lock)"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {name}=={pins[name]}, outside {requirement.specifier}"
        )


# Pythons that `requires-python >=3.11` admits, as an image's base may have them.
ADMITTED_PYTHONS = ("3.11.0", "3.11.2", "3.11.3", "3.12.0", "3.13.0")


def test_requirements_lock_pins_what_the_pinned_packages_need_on_every_admitted_python() -> None:
    # redis-py needs async-timeout below Python 3.11.3; `pip freeze` on a newer Python
    # leaves it out, and an image on a 3.11.0-3.11.2 base built, then could not start.
    pins = _lock()
    missing = []
    for name, pin in pins.items():
        try:
            requires = metadata.requires(pin.name) or []
        except metadata.PackageNotFoundError:  # pinned for other Pythons only (async-timeout)
            continue
        for needed in map(Requirement, requires):
            for python in ADMITTED_PYTHONS:
                env = {"python_full_version": python, "python_version": python[:4], "extra": ""}
                if needed.marker is not None and not needed.marker.evaluate(env):
                    continue
                held = pins.get(_normal(needed.name))
                installed = held is not None and (held.marker is None or held.marker.evaluate(env))
                version = next(iter(held.specifier)).version if held else None
                if not installed or not needed.specifier.contains(version or "", prereleases=True):
                    missing.append(f"{name} needs {needed} on Python {python}")
    assert not missing, "requirements.lock (make lock, requirements.markers):\n" + "\n".join(
        sorted(set(missing))
    )
    assert str(pins["async-timeout"].marker) == 'python_full_version < "3.11.3"'


def test_the_image_build_checks_its_requirements() -> None:
    steps = [
        line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("RUN")
    ]
    assert steps[-1] == "RUN pip check" or "RUN pip check" in steps, steps
    assert "# syntax=" not in (ROOT / "Dockerfile").read_text(), (
        "no frontend fetched from a registry"
    )


def test_compose_builds_one_image_and_needs_no_secret_to_be_read() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert [name for name, s in services.items() if "build" in s] == ["fanout"]
    assert services["consumer"]["image"] == services["fanout"]["image"]
    assert ":?" not in (ROOT / "docker-compose.yml").read_text(), "ps/logs/down need no variable"
    assert set(compose["volumes"]) == {"redis-data"}, "monitoring volumes only with the profile"


@pytest.mark.spawns
def test_serve_with_a_redis_url_and_no_secret_refuses_to_start(tmp_path: Path) -> None:
    # What the compose file no longer insists on, the service does: one line, exit 2.
    result = run(
        "serve", "--port", "1", cwd=tmp_path, env=clean_env(FANOUT_REDIS_URL="redis://r:6379/0")
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "fanout: configuration error: FANOUT_SECRETS: not set (nor FANOUT_SECRETS_FILE), and "
        "FANOUT_REDIS_URL is: set it to the webhook secret from Voucherify (Project settings > "
        "Webhooks); a secret is generated only for the embedded Valkey"
    ]


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_deployment_files_set_only_variables_the_service_reads() -> None:
    # A typo such as FANOUT_REDIS_CLUSTR in a manifest would be silently ignored.
    source = "\n".join(p.read_text() for p in (ROOT / "service").rglob("*.py"))
    files = [
        ROOT / "Dockerfile",
        ROOT / "docker-compose.yml",
        *sorted((ROOT / "deploy" / "k8s").rglob("*.yaml")),
    ]
    for path in files:
        for variable in set(re.findall(r"\bFANOUT_[A-Z_]+\b", path.read_text())):
            if variable == "FANOUT_PUBLISH_PORT":  # compose's host port, not the service's
                continue
            assert f'"{variable}"' in source, f"{path.relative_to(ROOT)}: {variable} is not read"


def test_kubernetes_deployment_is_hardened() -> None:
    deployment = yaml.safe_load((ROOT / "deploy/k8s/base/deployment.yaml").read_text())
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] >= 2
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"requests", "limits"} <= container["resources"].keys()
    # `fanout serve` gives uvicorn 10 s of graceful shutdown, after a 5 s preStop.
    assert pod["terminationGracePeriodSeconds"] > 10 + 5
