"""OpenTelemetry traces and metrics of every guarded call.

- :mod:`.attributes`: every span, attribute, event and metric name (search Jaeger by them).
- :mod:`.spans`: the ``execute_tool {tool}`` span and metrics of one call.
- :mod:`.content`: what of arguments and results may be recorded (nothing, by default).
- :mod:`.setup`: :func:`configure_telemetry` for applications, from ``OTEL_*`` variables.
- :mod:`.jaeger_file`: a Jaeger JSON trace file for runs without a collector.
- :mod:`.tree`: a trace file printed as a tree (``agent-guardrails traces``).
"""

from agent_guardrails.telemetry.content import ContentPolicy, Redactor
from agent_guardrails.telemetry.setup import TelemetrySetup, configure_telemetry

__all__ = ["ContentPolicy", "Redactor", "TelemetrySetup", "configure_telemetry"]
