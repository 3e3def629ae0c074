"""The HTTP API of a learning process, served from a child process.

Requests and learning then share no interpreter lock: under load the learning loop keeps
its core, and the API's event loop its own. The parent ships what the API reads, in the
background: each served copy the pipeline publishes on its board (pickled, at most one
per ``publish_every_s``), each alert revision, and every quarter second the progress
(``status``) and consumer lag. The child keeps a board, an alert history and the last
progress of its own and serves the same app over them; labels posted to it are sent back
to the parent's sink when the parent has no broker for the child to use.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import pickle
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

_STATUS_EVERY_S = 0.25


class ApiProcess:
    """Parent side: start the child, ship the board, the alerts and the progress to it."""

    def __init__(
        self,
        board: Any,
        alerts: Any,
        app_kwargs: dict[str, Any],
        host: str,
        port: int,
        *,
        status: Callable[[], dict[str, Any]] | None = None,
        lag: Callable[[], dict[str, int]] | None = None,
        labels_sink: Any = None,
        labels_topic: str = "labels",
    ):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_child, args=(child, app_kwargs, host, port), name="driftline-api", daemon=True)
        self._board = board
        self._status = status
        self._lag = lag
        self._labels = labels_sink
        self._labels_topic = labels_topic
        self._send_lock = threading.Lock()
        self._model_due = threading.Event()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self.host = host
        self.port = port
        board.subscribe(lambda served: self._model_due.set())
        alerts.subscribe(self._alert)

    def start(self, timeout_s: float = 60.0) -> None:
        from stream.exceptions import ConfigError

        self._proc.start()
        # what the board holds now reaches the child before it listens: its first answer
        # already comes from the model the in-process API would have used
        for served in self._board.all():
            self._send(("model", served))
        self._send(("status", self._status() if self._status is not None else {}, None))
        self._send(("serve",))
        threading.Thread(target=self._receive, name="api-receive", daemon=True).start()
        if not self._ready.wait(timeout_s):
            raise ConfigError(f"http_port: the API process did not listen on {self.host}:{self.port} (in use? pick another with --port)")
        self._model_due.set()
        threading.Thread(target=self._ship, name="api-ship", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._model_due.set()
        with contextlib.suppress(OSError, EOFError):
            self._send(("stop",))
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.terminate()

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            self._conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))

    def _alert(self, alert: Any) -> None:
        try:
            self._send(("alert", alert))
        except (OSError, EOFError) as exc:
            logger.warning("API process gone, alert %s not shown there: %s", getattr(alert, "id", "?"), exc)

    def _ship(self) -> None:
        last_status = 0.0
        while not self._stop.is_set():
            try:
                if self._model_due.wait(_STATUS_EVERY_S):
                    self._model_due.clear()
                    if self._stop.is_set():
                        return
                    for served in self._board.all():
                        self._send(("model", served))
                now = time.monotonic()
                if now - last_status >= _STATUS_EVERY_S:
                    last_status = now
                    status = self._status() if self._status is not None else {}
                    lag = None
                    if self._lag is not None:
                        try:
                            lag = self._lag()
                        except Exception as exc:  # a slow broker leaves the sample without lag
                            logger.debug("lag unavailable: %s", exc)
                    self._send(("status", status, lag))
            except (OSError, EOFError, BrokenPipeError) as exc:
                if not self._stop.is_set():
                    logger.error("API process gone: %s", exc)
                return
            except Exception:
                logger.exception("shipping to the API process failed; trying again")
                time.sleep(_STATUS_EVERY_S)

    def _receive(self) -> None:
        while True:
            try:
                message = pickle.loads(self._conn.recv_bytes())  # noqa: S301 - our own child's bytes
            except (OSError, EOFError):
                return
            kind = message[0]
            if kind == "listening":
                self.port = message[2]
                self._ready.set()
            elif kind == "label" and self._labels is not None:
                _, value, key, reply = message
                try:
                    self._labels.send(self._labels_topic, value, key=key)
                    self._labels.flush(10.0)
                    self._send(("label-done", reply, None))
                except Exception as exc:
                    self._send(("label-done", reply, str(exc)))


# ------------------------------------------------------------------- child


class _ParentSink:
    """A labels sink in the child that hands each label to the parent's and waits for it."""

    def __init__(self, conn: Any, lock: threading.Lock, pending: dict[int, Any]):
        self._conn = conn
        self._lock = lock
        self._pending = pending
        self._queued: list[int] = []
        self._next = 0

    def send(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        from concurrent.futures import Future

        with self._lock:
            self._next += 1
            ident = self._next
            self._pending[ident] = Future()
            self._conn.send_bytes(pickle.dumps(("label", value, key, ident)))
        self._queued.append(ident)

    def flush(self, timeout_s: float | None = None) -> None:
        from connectors.exceptions import ConnectorError

        queued, self._queued = self._queued, []
        for ident in queued:
            error = self._pending[ident].result(timeout=timeout_s)
            del self._pending[ident]
            if error is not None:
                raise ConnectorError(error)


def _child(conn: Any, app_kwargs: dict[str, Any], host: str, port: int) -> None:
    # Ctrl-C reaches the whole process group: the parent decides when the API stops
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from learners.driftmoe_neural import use_one_thread
    from stream.alerts import AlertLog
    from stream.api import create_app
    from stream.runtime.board import ModelBoard
    from stream.service import HttpServer

    use_one_thread()
    board = ModelBoard()
    alerts = AlertLog()
    latest: dict[str, Any] = {"status": {}, "lag": None}
    lock = threading.Lock()
    pending: dict[int, Any] = {}
    stop = threading.Event()
    kwargs = dict(app_kwargs)
    if kwargs.pop("labels_from_parent", False):
        kwargs["labels_sink"] = _ParentSink(conn, lock, pending)

    def lag() -> dict[str, int]:
        return latest["lag"] or {}

    def apply(message: tuple[Any, ...]) -> bool:
        """Take one message from the parent; False once it says stop."""
        kind = message[0]
        if kind == "model":
            board.publish(message[1])
        elif kind == "alert":
            alerts.append(message[1])
        elif kind == "status":
            latest["status"], latest["lag"] = message[1], message[2]
        elif kind == "label-done":
            future = pending.get(message[1])
            if future is not None:
                future.set_result(message[2])
        elif kind == "stop":
            return False
        return True

    def receive() -> tuple[Any, ...] | None:
        try:
            return pickle.loads(conn.recv_bytes())  # noqa: S301 - our own parent's bytes
        except (OSError, EOFError):
            return None

    # the parent's current models and progress come first, then "serve"
    while (message := receive()) is not None and message[0] != "serve":
        if not apply(message):
            return
    if message is None:
        return
    app = create_app(board, alerts, status=lambda: latest["status"], lag=lag, **kwargs)
    server = HttpServer(app, host, port)
    server.start()
    with lock:
        conn.send_bytes(pickle.dumps(("listening", host, server.port)))
    while not stop.is_set() and (message := receive()) is not None and apply(message):
        pass
    server.stop()
