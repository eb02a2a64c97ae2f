"""The pipeline: one guarded call's path through engine, store and telemetry, behind the
:class:`~agent_guardrails.pipeline.guardrails.Guardrails` facade."""
