"""Approvals people hear about: notifiers called when a question is raised, answered, about
to expire, or expired, off the call's path.

A notifier is any callable taking an :class:`ApprovalEvent` (a Python function that posts to
chat, pages someone, fills a queue), or a :class:`Webhook` (an HTTP POST of the event as
JSON, signed with HMAC-SHA-256, retried with backoff, each attempt bounded by a timeout).
``Guardrails(..., notifiers=[...])`` hands each event to a :class:`Notifications`
dispatcher: one daemon thread delivers them in order, so a slow or failing receiver never
delays an agent (the call only enqueues; a full queue drops the oldest event with a
warning). A notifier that raises is logged and the next one still runs. ``guard.close()``
delivers what waits (bounded by ``drain_timeout``).

``raised`` and ``answered`` come from the pipeline; ``expiring`` and ``expired`` from
``agent-guardrails approvals --sweep`` (see :mod:`agent_guardrails.ops.approvals`), which
also records each expired question in the audit log.

>>> seen = []
>>> hub = Notifications([seen.append])
>>> hub.send(ApprovalEvent("raised", "t1|ns|c1", "send_email", "email.send", ("ops",),
...                        1, 0.5, "USD", 0.0, 3600.0))
>>> hub.close()
>>> [e.kind for e in seen]
['raised']
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Literal

__all__ = ["ApprovalEvent", "Notifications", "Notifier", "Webhook", "signature"]

log = logging.getLogger("agent_guardrails.notify")

EventKind = Literal["raised", "answered", "expiring", "expired"]


@dataclass(frozen=True, slots=True)
class ApprovalEvent:
    """A question put to a human, and what became of it. ``call_key`` is
    ``thread_id | checkpoint_ns | tool_call_id`` for a call in a graph (``thread_id``
    below); times are epoch seconds."""

    kind: EventKind
    call_key: str
    tool: str
    action: str
    roles: tuple[str, ...]
    level: int
    cost: float
    currency: str
    asked_at: float
    expires_at: float
    answer: str | None = None  # answered: approve, edit, reject, respond
    by: str | None = None  # answered: the approver
    refused: str | None = None  # answered: why the answer was refused, if it was

    @property
    def thread_id(self) -> str | None:
        return self.call_key.split("|", 1)[0] if "|" in self.call_key else None

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["roles"] = list(self.roles)
        data["thread_id"] = self.thread_id
        return data


Notifier = Callable[[ApprovalEvent], object]


def signature(secret: bytes, body: bytes) -> str:
    """The ``X-Agent-Guardrails-Signature`` header of ``body``: ``sha256=<hex HMAC>``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class Webhook:
    """POST each event as JSON to ``url``, signed with ``secret`` (header
    ``X-Agent-Guardrails-Signature: sha256=...``; the receiver recomputes the HMAC of the
    raw body). Up to ``retries`` more attempts on a network error or a 5xx/429 answer, with
    exponential backoff from ``backoff`` seconds; each attempt times out after ``timeout``.
    A 4xx answer (other than 429) is not retried. Raises after the last attempt (the
    dispatcher logs it)."""

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        *,
        timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"webhook url must start with http:// or https://, got {url!r}")
        if not secret:
            raise ValueError("a webhook needs a secret to sign its requests with")
        if not (timeout > 0 and retries >= 0 and backoff >= 0):
            raise ValueError("webhook timeout must be > 0, retries and backoff >= 0")
        self.url = url
        self.secret = secret.encode() if isinstance(secret, str) else secret
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff

    def __call__(self, event: ApprovalEvent) -> None:
        body = json.dumps(event.as_dict(), sort_keys=True).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "agent-guardrails",
            "X-Agent-Guardrails-Event": event.kind,
            "X-Agent-Guardrails-Signature": signature(self.secret, body),
        }
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
                return
            except urllib.error.HTTPError as exc:
                if exc.code < 500 and exc.code != 429:
                    raise  # the receiver refused it: retrying will not help
                problem: Exception = exc
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                problem = exc
            if attempt == self.retries:
                raise problem
            time.sleep(self.backoff * (2**attempt))

    def __repr__(self) -> str:
        return f"Webhook({self.url!r})"


class Notifications:
    """Delivers events to ``notifiers`` on one daemon thread, in order, never on the
    caller's thread. ``send`` never blocks; at ``capacity`` queued events the oldest is
    dropped (with a warning)."""

    def __init__(
        self, notifiers: Sequence[Notifier], *, capacity: int = 1000, drain_timeout: float = 5.0
    ) -> None:
        self.notifiers = tuple(notifiers)
        self.drain_timeout = drain_timeout
        self._queue: queue.Queue[ApprovalEvent | None] = queue.Queue(maxsize=capacity)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0

    def send(self, event: ApprovalEvent) -> None:
        if not self.notifiers:
            return
        self._start()
        while True:
            try:
                self._queue.put_nowait(event)
                return
            except queue.Full:
                try:
                    dropped = self._queue.get_nowait()
                except queue.Empty:
                    continue
                log.warning("approval notifications: queue full, dropped %r", dropped)

    def close(self) -> None:
        """Deliver what waits (up to ``drain_timeout`` seconds), then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is None:
            return
        try:
            self._queue.put(None, timeout=self.drain_timeout)
        except queue.Full:
            log.warning("approval notifications: could not stop the delivery thread in time")
            return
        thread.join(self.drain_timeout)

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="agent-guardrails-notify", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is None:
                return
            for notifier in self.notifiers:
                try:
                    notifier(event)
                    self.delivered += 1
                except Exception:
                    self.failed += 1
                    log.exception("approval notifier %r failed on %s", notifier, event.kind)
