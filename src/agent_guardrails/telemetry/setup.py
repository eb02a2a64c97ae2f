"""``configure_telemetry()``: OpenTelemetry providers for applications and the CLI.

The library itself never configures OpenTelemetry; applications do, once, at start-up. This
helper builds an SDK ``TracerProvider`` (and a ``MeterProvider`` when metrics have somewhere
to go) from the standard variables, with batch processing, and hands them back to pass to
``Guardrails(tracer_provider=..., meter_provider=...)``. It sets the global providers only
when asked (``set_global=True``), e.g. so that OpenInference or OpenLLMetry spans and ours
land in the same traces.

Variables honoured (as the OpenTelemetry SDK defines them):

- ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` /
  ``OTEL_EXPORTER_OTLP_METRICS_ENDPOINT``: where to send; with none set, spans go to a
  Jaeger JSON trace file (``trace_file``) instead, and metrics nowhere.
- ``OTEL_EXPORTER_OTLP_PROTOCOL`` (and the ``_TRACES_`` / ``_METRICS_`` variants):
  ``http/protobuf`` (the default) or ``grpc``.
- ``OTEL_EXPORTER_OTLP_HEADERS``, ``_TIMEOUT``, ``_INSECURE``, ``_CERTIFICATE``: read by the
  exporters themselves.
- ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``: the service (``service_name`` is
  only the default).
- ``OTEL_TRACES_SAMPLER`` / ``OTEL_TRACES_SAMPLER_ARG``: the sampler.
- ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER``: ``otlp`` (default), ``console`` or
  ``none``.
- ``OTEL_BSP_*``: the batch span processor; ``OTEL_METRIC_EXPORT_INTERVAL``: the reader.
- ``OTEL_SDK_DISABLED=true``: no providers at all (no-op).

>>> telemetry = configure_telemetry("my-agent", trace_file="trace.json")  # doctest: +SKIP
>>> guard = Guardrails(pack, tracer_provider=telemetry.tracer_provider)  # doctest: +SKIP
>>> telemetry.shutdown()  # flushes what is buffered  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from opentelemetry import metrics, trace

from agent_guardrails.errors import ConfigurationError

__all__ = ["TelemetrySetup", "configure_telemetry"]

_PROTOCOLS = ("http/protobuf", "grpc")


@dataclass
class TelemetrySetup:
    """What :func:`configure_telemetry` built. ``destination`` says where spans go, for
    people: ``otlp http/protobuf http://...``, ``jaeger file trace.json``, ``console`` or
    ``none``."""

    tracer_provider: trace.TracerProvider
    meter_provider: metrics.MeterProvider | None
    destination: str
    trace_file: Path | None = None
    _closers: list[Any] = field(default_factory=list, repr=False)

    def shutdown(self) -> None:
        """Flush buffered spans and metrics and stop the exporters (idempotent)."""
        closers, self._closers = self._closers, []
        for provider in closers:
            provider.shutdown()

    def __enter__(self) -> TelemetrySetup:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown()


def _env(environ: Mapping[str, str], *names: str) -> str:
    for name in names:
        value = environ.get(name, "").strip()
        if value:
            return value
    return ""


def _protocol(environ: Mapping[str, str], signal: str) -> str:
    name = f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL"
    value = _env(environ, name, "OTEL_EXPORTER_OTLP_PROTOCOL") or "http/protobuf"
    if value not in _PROTOCOLS:
        raise ConfigurationError(
            f"{name} / OTEL_EXPORTER_OTLP_PROTOCOL={value!r} is not supported: use "
            f"{' or '.join(_PROTOCOLS)}"
        )
    return value


def configure_telemetry(
    service_name: str = "agent-guardrails",
    *,
    trace_file: str | Path | None = None,
    set_global: bool = False,
) -> TelemetrySetup:
    """Build providers from the ``OTEL_*`` variables (see the module docstring).

    ``trace_file``: where to write a Jaeger JSON trace file when no OTLP endpoint is set
    (``None``: spans are not exported then). Needs the ``otel`` extra
    (``pip install 'agent-guardrails[otel]'``)."""
    env = os.environ
    if _env(env, "OTEL_SDK_DISABLED").lower() == "true":
        return TelemetrySetup(trace.NoOpTracerProvider(), None, "none (OTEL_SDK_DISABLED)")
    try:
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        raise ConfigurationError(
            "configure_telemetry needs the OpenTelemetry SDK: pip install 'agent-guardrails[otel]'"
        ) from None

    attributes = {} if _env(env, "OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    resource = Resource.create(attributes)
    provider = TracerProvider(resource=resource)
    setup = TelemetrySetup(provider, None, "none", _closers=[provider])

    traces_exporter = _env(env, "OTEL_TRACES_EXPORTER").lower() or "otlp"
    endpoint = _env(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    if traces_exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        setup.destination = "console"
    elif traces_exporter == "otlp" and endpoint:
        protocol = _protocol(env, "TRACES")
        provider.add_span_processor(BatchSpanProcessor(_otlp_span_exporter(protocol)))
        setup.destination = f"otlp {protocol} {endpoint}"
    elif traces_exporter == "otlp" and trace_file is not None:
        from agent_guardrails.telemetry.jaeger_file import JaegerFileExporter

        setup.trace_file = Path(trace_file)
        provider.add_span_processor(BatchSpanProcessor(JaegerFileExporter(setup.trace_file)))
        setup.destination = f"jaeger file {setup.trace_file}"
    elif traces_exporter not in ("otlp", "none"):
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER={traces_exporter!r} is not supported: use otlp, console or none"
        )

    metrics_exporter = _env(env, "OTEL_METRICS_EXPORTER").lower() or "otlp"
    metrics_endpoint = _env(
        env, "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    if metrics_exporter == "otlp" and metrics_endpoint:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        reader = PeriodicExportingMetricReader(_otlp_metric_exporter(_protocol(env, "METRICS")))
        meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
        setup.meter_provider = meter_provider
        setup._closers.append(meter_provider)
    if set_global:
        trace.set_tracer_provider(provider)
        if setup.meter_provider is not None:
            metrics.set_meter_provider(setup.meter_provider)
    return setup


def _otlp_span_exporter(protocol: str) -> Any:
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                OTLPSpanExporter as GrpcExporter,
            )

            return GrpcExporter()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    except ImportError:
        raise ConfigurationError(
            f"the OTLP {protocol} exporter is not installed: pip install 'agent-guardrails[otel]'"
        ) from None


def _otlp_metric_exporter(protocol: str) -> Any:
    try:
        if protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
                OTLPMetricExporter as GrpcExporter,
            )

            return GrpcExporter()
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        return OTLPMetricExporter()
    except ImportError:
        raise ConfigurationError(
            f"the OTLP {protocol} metric exporter is not installed: pip install "
            "'agent-guardrails[otel]'"
        ) from None
