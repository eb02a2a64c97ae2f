"""configure_telemetry(): the standard OTEL_* variables, batch processing, no globals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from agent_guardrails import CallRequest, ConfigurationError, Guardrails, PolicyPack
from agent_guardrails.store import MemoryStore
from agent_guardrails.telemetry import configure_telemetry
from agent_guardrails.telemetry.jaeger_file import read_trace_file

PACK = "name: p\nversion: 1\ndefaults: {level: execute}\nactions:\n  crm.tag: {risk: low}\n"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)


def processors(provider: trace.TracerProvider) -> list[object]:
    assert isinstance(provider, TracerProvider)
    return list(provider._active_span_processor._span_processors)


def test_without_an_endpoint_spans_go_to_a_jaeger_file(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    before = trace.get_tracer_provider()
    with configure_telemetry("svc", trace_file=path) as telemetry:
        assert telemetry.destination == f"jaeger file {path}"
        assert telemetry.meter_provider is None
        assert all(isinstance(p, BatchSpanProcessor) for p in processors(telemetry.tracer_provider))
        guard = Guardrails(
            PolicyPack.from_yaml(PACK),
            store=MemoryStore(),
            tracer_provider=telemetry.tracer_provider,
        )
        guard.run(CallRequest("tag", "crm.tag", {}), lambda a: "ok")
    assert trace.get_tracer_provider() is before  # never set globally
    (only,) = read_trace_file(path)
    (span,) = only["spans"]
    assert span["operationName"] == "execute_tool tag"
    assert only["processes"][span["processID"]]["serviceName"] == "svc"


def test_otel_service_name_wins_over_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
    path = tmp_path / "t.json"
    with configure_telemetry("default-name", trace_file=path) as telemetry:
        telemetry.tracer_provider.get_tracer("t").start_span("x").end()
    doc = json.loads(path.read_text())
    assert [p["serviceName"] for p in doc["data"][0]["processes"].values()] == ["from-env"]


@pytest.mark.parametrize(
    ("protocol", "exporter_module"),
    [
        ("http/protobuf", "opentelemetry.exporter.otlp.proto.http.trace_exporter"),
        ("grpc", "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"),
    ],
)
def test_an_endpoint_selects_the_otlp_exporter_for_its_protocol(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, protocol: str, exporter_module: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
    monkeypatch.setenv("OTEL_METRICS_EXPORTER", "none")
    telemetry = configure_telemetry(trace_file=tmp_path / "unused.json")
    assert telemetry.destination == f"otlp {protocol} http://127.0.0.1:9"
    assert telemetry.trace_file is None
    (processor,) = processors(telemetry.tracer_provider)
    assert isinstance(processor, BatchSpanProcessor)
    exporter = processor._batch_processor._exporter
    assert type(exporter).__module__ == exporter_module
    assert telemetry.meter_provider is None
    telemetry.shutdown()
    assert not (tmp_path / "unused.json").exists()


def test_metrics_follow_the_endpoint_unless_switched_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    before = metrics.get_meter_provider()
    telemetry = configure_telemetry()
    assert telemetry.meter_provider is not None
    assert telemetry.destination == "none"
    assert metrics.get_meter_provider() is before
    telemetry.shutdown()
    telemetry.shutdown()  # idempotent


def test_sdk_disabled_gives_no_op_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    telemetry = configure_telemetry()
    assert isinstance(telemetry.tracer_provider, trace.NoOpTracerProvider)
    assert telemetry.meter_provider is None


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "use http/protobuf or grpc"),
        ("OTEL_TRACES_EXPORTER", "zipkin", "use otlp, console or none"),
    ],
)
def test_unsupported_settings_say_what_to_use(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=message):
        configure_telemetry()


def test_the_sampler_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    path = tmp_path / "t.json"
    with configure_telemetry(trace_file=path) as telemetry:
        guard = Guardrails(
            PolicyPack.from_yaml(PACK),
            store=MemoryStore(),
            tracer_provider=telemetry.tracer_provider,
        )
        assert guard.run(CallRequest("tag", "crm.tag", {}), lambda a: "ok") == "ok"
    assert not path.exists()  # nothing sampled, nothing written


def test_the_trace_file_keeps_the_newest_spans_up_to_its_cap(tmp_path: Path) -> None:
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    from agent_guardrails.telemetry.jaeger_file import JaegerFileExporter

    path = tmp_path / "capped.json"
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(JaegerFileExporter(path, max_spans=3)))
    tracer = provider.get_tracer("t")
    for i in range(5):
        tracer.start_span(f"s{i}").end()
    names = [s["operationName"] for t in read_trace_file(path) for s in t["spans"]]
    assert names == ["s2", "s3", "s4"]
    with pytest.raises(ValueError, match="max_spans must be at least 1"):
        JaegerFileExporter(path, max_spans=0)
