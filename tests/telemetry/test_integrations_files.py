"""integrations/jaeger/: the compose file, the Collector config and the README agree.

No Docker here, so these parse the files and check the pieces that must line up: the ports
Jaeger publishes, where the demo sends its spans, and which Collector pipeline goes where.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HERE = ROOT / "integrations" / "jaeger"
JAEGER_IMAGE = "cr.jaegertracing.io/jaegertracing/jaeger:2.15.0"
COLLECTOR_IMAGE = "otel/opentelemetry-collector-contrib:0.147.0"
OTLP_PORTS = {"grpc": 4317, "http/protobuf": 4318}

# Component types the config may use, and what each is (Collector >= 0.144 names first).
RECEIVERS = {"otlp"}
PROCESSORS = {"batch", "memory_limiter"}
EXPORTERS = {"otlp_grpc", "otlp_http", "debug", "otlp", "otlphttp"}


def _load(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((HERE / name).read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), f"{name}: not a YAML mapping"
    return loaded


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load("compose.yaml")


@pytest.fixture(scope="module")
def collector() -> dict[str, Any]:
    return _load("otel-collector.yaml")


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(str(item).split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def _published(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(host port, container port) pairs, short ("h:c", "ip:h:c", "h:c/tcp") or long syntax."""
    pairs: set[tuple[int, int]] = set()
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            pairs.add((int(entry["published"]), int(entry["target"])))
            continue
        # Unquoted, a mapping like 22:22 is a YAML 1.1 base-60 integer (1342), not a string.
        assert isinstance(entry, str), f"port {entry!r} must be a quoted string"
        *_, host, container = entry.split("/")[0].split(":")
        pairs.add((int(host), int(container)))
    return pairs


# ---------------------------------------------------------------- compose.yaml


def test_jaeger_is_the_pinned_v2_image_with_otlp_and_ui_ports(compose: dict[str, Any]) -> None:
    jaeger = compose["services"]["jaeger"]
    assert jaeger["image"] == JAEGER_IMAGE
    assert {(4317, 4317), (4318, 4318), (16686, 16686)} <= _published(jaeger)


def test_demo_sends_otlp_to_the_jaeger_service(compose: dict[str, Any]) -> None:
    services = compose["services"]
    demo = services["demo"]
    env = _environment(demo)
    endpoint = urlsplit(env["OTEL_EXPORTER_OTLP_ENDPOINT"])
    protocol = env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    assert endpoint.scheme == "http"
    assert endpoint.hostname == "jaeger"
    assert "jaeger" in services
    assert endpoint.port == OTLP_PORTS[protocol], f"{protocol} goes to {OTLP_PORTS[protocol]}"
    container_ports = {container for _, container in _published(services["jaeger"])}
    assert endpoint.port in container_ports
    depends = demo.get("depends_on", [])
    assert "jaeger" in (depends if isinstance(depends, list) else list(depends))


def test_demo_names_its_service_and_keeps_metrics_away_from_jaeger(
    compose: dict[str, Any],
) -> None:
    env = _environment(compose["services"]["demo"])
    assert env["OTEL_SERVICE_NAME"] == "agent-guardrails-demo"
    assert env["OTEL_METRICS_EXPORTER"] == "none"  # Jaeger has no metrics receiver
    assert env.get("AGENT_GUARDRAILS_CAPTURE_CONTENT", "false") == "false"


def test_demo_waits_for_jaeger_then_runs_the_demo(compose: dict[str, Any]) -> None:
    command = compose["services"]["demo"]["command"]
    script = command if isinstance(command, str) else "\n".join(command)
    assert "http://jaeger:13133/status" in script  # Jaeger v2's healthcheckv2 endpoint
    assert '"agent-guardrails", "demo"' in script


def test_demo_image_builds_from_the_repository_root(compose: dict[str, Any]) -> None:
    build = compose["services"]["demo"]["build"]
    context = (HERE / build["context"]).resolve()
    assert context == ROOT
    dockerfile = context / build["dockerfile"]
    assert dockerfile == HERE / "Dockerfile"
    text = dockerfile.read_text(encoding="utf-8")
    assert "pip install '.[otel]'" in text
    copied = {"pyproject.toml", "README.md", "src"}
    assert all((ROOT / name).exists() for name in copied)
    ignore = (HERE / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    assert {"!pyproject.toml", "!README.md", "!src/"} <= set(ignore)


# ---------------------------------------------------------------- otel-collector.yaml


def _component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def test_collector_receives_otlp_on_both_ports(collector: dict[str, Any]) -> None:
    protocols = collector["receivers"]["otlp"]["protocols"]
    assert protocols["grpc"]["endpoint"] == "0.0.0.0:4317"
    assert protocols["http"]["endpoint"] == "0.0.0.0:4318"


def test_collector_components_are_known_types(collector: dict[str, Any]) -> None:
    for section, known in (
        ("receivers", RECEIVERS),
        ("processors", PROCESSORS),
        ("exporters", EXPORTERS),
    ):
        for component_id in collector[section]:
            assert _component_type(component_id) in known, f"{section}: {component_id}"


def test_collector_pipelines_use_only_defined_components(collector: dict[str, Any]) -> None:
    pipelines = collector["service"]["pipelines"]
    assert {"traces", "metrics"} <= set(pipelines)
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in pipelines.items():
        for section, ids in used.items():
            for component_id in pipeline.get(section, []):
                assert component_id in collector[section], f"{name}: {component_id} undefined"
                ids.add(component_id)
        assert pipeline["receivers"], name
        assert pipeline["exporters"], name
        assert pipeline["processors"][0] == "memory_limiter", f"{name}: memory_limiter first"
        assert "batch" in pipeline["processors"], name
    for section, ids in used.items():
        assert set(collector[section]) == ids, f"{section} defined but unused"


def _jaeger_exporters(collector: dict[str, Any]) -> set[str]:
    out = set()
    for component_id, config in collector["exporters"].items():
        endpoint = str((config or {}).get("endpoint", ""))
        host = urlsplit(endpoint if "//" in endpoint else f"//{endpoint}").hostname
        if host == "jaeger":
            out.add(component_id)
    return out


def test_collector_sends_traces_to_jaeger_over_grpc(collector: dict[str, Any]) -> None:
    jaeger = _jaeger_exporters(collector)
    assert jaeger == {"otlp_grpc/jaeger"}
    config = collector["exporters"]["otlp_grpc/jaeger"]
    assert config["endpoint"] == "jaeger:4317"
    assert config["tls"]["insecure"] is True
    traces = collector["service"]["pipelines"]["traces"]["exporters"]
    assert "otlp_grpc/jaeger" in traces
    assert len(traces) >= 2, "the point of the Collector: fan out to more than Jaeger"


def test_collector_never_sends_metrics_to_jaeger(collector: dict[str, Any]) -> None:
    metrics = collector["service"]["pipelines"]["metrics"]["exporters"]
    assert metrics, "metrics go somewhere"
    assert not _jaeger_exporters(collector) & set(metrics)


# ---------------------------------------------------------------- README


def test_readme_names_the_same_images_ports_and_service() -> None:
    readme = (HERE / "README.md").read_text(encoding="utf-8")
    collector_text = (HERE / "otel-collector.yaml").read_text(encoding="utf-8")
    assert JAEGER_IMAGE in readme
    assert COLLECTOR_IMAGE in readme
    assert COLLECTOR_IMAGE.rsplit(":", 1)[1] in collector_text
    for text in ("16686:16686", "4317:4317", "4318:4318", "agent-guardrails-demo"):
        assert text in readme
    assert "http://localhost:4318" in readme
    assert "agent-guardrails-trace.json" in readme
    assert "AGENT_GUARDRAILS_CAPTURE_CONTENT=true" in readme
