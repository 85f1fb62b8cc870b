"""Lossless delivery of alert and event documents to a store.

    sensor thread                    delivery thread
    put(doc) -> bounded queue  ----> batches -> Store.write -> WriteResult
                 | full                  | StoreUnavailable      | rejected
                 v                       v                       v
               Spool (disk)  <----- everything pending      dead-letter JSONL

:meth:`Delivery.put` never waits on the store: it appends to an in-memory queue
of ``queue_size`` documents and, when the queue is full, moves the whole queue
and the new document to the on-disk :class:`~analyzer.spool.Spool` (one
``fsync``). A background thread writes batches of at most ``batch_size``
documents to the store.

Two modes, chosen by whether the spool holds anything:

* *direct*: the thread writes the head of the queue and removes it once the
  store has taken it. If the store is unavailable, the whole queue (the failed
  batch first) goes to the spool.
* *spooled*: new documents go behind the spooled ones (the thread moves the
  queue to the spool before each batch) and batches come from the spool head;
  a batch leaves the spool only after the store took it. The thread retries
  with jittered exponential backoff (``backoff_initial`` doubling up to
  ``backoff_max``, each wait drawn from its upper half).

So documents reach the store in the order they were put, across outages and
restarts. Only one case reorders: after the spool filled up, documents it
refused are lost (counted in ``dropped_events``/``dropped_alerts``; events are
refused, and evicted, before any alert is).

A document the store refuses for good (:attr:`WriteResult.rejected`, e.g. a
mapping conflict) is appended to the dead-letter file as one JSON line
``{"time", "store", "reason", "kind", "id", "version", "document"}`` and
counted; the rest of its batch counts as written.

:meth:`Delivery.close` keeps delivering until everything is written, its
deadline passes or the store refuses (it does not wait out a backoff at
shutdown), then leaves whatever is left in the spool for the next start.
A :class:`Delivery` on the same spool directory (a restarted sensor) delivers
it first.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, Field

from analyzer.spool import Spool, SpoolError
from analyzer.stores import Document, Store, StoreAuthError, StoreError, StoreUnavailable, WriteResult
from sensor.events import iso_time

__all__ = ["Delivery", "DeliverySettings", "decode_document", "default_data_dir", "encode_document"]


def default_data_dir() -> Path:
    return Path("~/.local/share/icsmon").expanduser()


class DeliverySettings(BaseModel):
    """How documents travel from the sensor to the store (``ICSMON_ANALYZER__DELIVERY__...``)."""

    spool_dir: Path = Field(default_factory=lambda: default_data_dir() / "spool",
                            description="Durable spool for documents the store cannot take yet; each running"
                            " process takes a slot folder under it (0, 1, ...; see analyzer.spool.open_slot).")
    spool_max_bytes: int = Field(256 << 20, ge=1 << 16, description="Bound of the spool; when full, events are"
                                 " dropped before alerts and every drop is counted.")
    dead_letter: Path = Field(default_factory=lambda: default_data_dir() / "dead-letter.jsonl",
                              description="JSON lines of documents the store refused for good, with the reason.")
    events: bool = Field(False, description="Deliver protocol events too (those the volume settings keep), not"
                         " only alerts. Off by default: a capture file is read far faster than any store indexes"
                         " (see the README's benchmark). Elasticsearch's own `events: false` also turns them off.")
    queue_size: int = Field(10_000, ge=1, description="Documents held in memory before spilling to the spool.")
    batch_size: int = Field(500, ge=1, description="Documents per write to the store.")
    close_timeout: float = Field(30.0, ge=0, description="Seconds the end of a run waits for delivery before"
                                 " leaving the rest in the spool for the next start.")
    update_interval: float = Field(1.0, ge=0, description="Seconds between documents of one alert while it keeps"
                                   " being updated (its final state is always written).")
    backoff_initial: float = Field(0.5, gt=0, description="Seconds before the first retry of an unavailable store.")
    backoff_max: float = Field(30.0, gt=0, description="Longest wait between retries.")


def encode_document(doc: Document) -> bytes:
    """A document as spool payload: a JSON array ``[kind, id, version, body]``."""
    return orjson.dumps((doc.kind, doc.id, doc.version, doc.body))


def decode_document(data: bytes) -> Document:
    kind, doc_id, version, body = orjson.loads(data)
    return Document(kind=kind, id=doc_id, body=body, version=version)


class Delivery:
    """Hands documents to ``store`` from a background thread, spooling whatever it cannot write now.

    ``store`` needs ``name`` and ``write`` (and ``check`` when ``check_first``: a store whose
    start-up check failed because it was unreachable is checked again before the first write,
    so templates and tables get installed once it answers). ``dead_letter`` is the path of
    the dead-letter JSON lines file (created on the first rejection).
    """

    def __init__(self, store: Store, spool: Spool, dead_letter: str | os.PathLike[str] | None = None, *,
                 batch_size: int = 500, batch_bytes: int = 8 << 20, queue_size: int = 10_000,
                 linger: float = 0.05, backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 check_first: bool = False, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if batch_size < 1 or queue_size < 1:
            raise ValueError("batch_size and queue_size must be at least 1")
        self.store = store
        self.spool = spool
        self.dead_letter_path = Path(dead_letter) if dead_letter else spool.path / "dead-letter.jsonl"
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.queue_size = queue_size
        self.linger = linger
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._needs_check = check_first
        self._rng = rng or random.Random()
        self._clock = clock
        self._queue: deque[Document] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._idle = threading.Condition(self._lock)
        self._inflight = 0  # direct mode: documents at the queue head being written
        self._inflight_seqs: dict[str, int] | None = None  # set when they were spilled meanwhile
        self._closing = False
        self._deadline = float("inf")
        self._failures = 0
        self._retry_at = 0.0
        self._thread: threading.Thread | None = None
        self._dead_letter_file: Any = None
        # statistics
        self.put_count = 0
        self.written = 0
        self.spooled_total = 0
        self.dead_letters = 0
        self.retries = 0
        self.batches = 0
        self.last_error: str | None = None
        self.last_error_time: float | None = None
        self.thread_error: str | None = None

    # -- the producer side -----------------------------------------------------------------------

    def start(self) -> Delivery:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"icsmon-delivery-{self.store.name}",
                                            daemon=True)
            self._thread.start()
        return self

    def put(self, doc: Document) -> None:
        """Queue one document; spills to the spool instead of waiting when the queue is full."""
        with self._lock:
            if self._closing:
                raise RuntimeError("Delivery.put() after close()")
            self.put_count += 1
            queue = self._queue
            queue.append(doc)
            if len(queue) > self.queue_size:
                self._spill()
            if len(queue) == 1 or len(queue) >= self.batch_size:
                self._wake.notify()

    def _spill(self) -> None:
        """Move the whole queue to the spool (lock held), keeping its order."""
        queue = self._queue
        if not queue:
            return
        docs = list(queue)
        seqs = self.spool.append([(d.kind, encode_document(d)) for d in docs])
        self.spooled_total += sum(1 for s in seqs if s is not None)
        if self._inflight:
            # The batch being written is the head of what was just spooled: remember its sequence
            # numbers so that a successful write removes it from the spool again.
            upto: dict[str, int] = {}
            for doc, seq in zip(docs[:self._inflight], seqs):
                if seq is not None:
                    upto[doc.kind] = seq
            self._inflight_seqs = upto
            self._inflight = 0
        queue.clear()

    # -- the delivery thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while self._step():
                pass
        except Exception as exc:  # noqa: BLE001 - record why delivery stopped; close() still spools the queue
            self.thread_error = f"{type(exc).__name__}: {exc}"
            self._error(f"delivery thread stopped: {self.thread_error}")
        finally:
            with self._lock:
                self._idle.notify_all()

    def _step(self) -> bool:
        """One batch (or one wait); False when the thread should end."""
        with self._lock:
            while True:
                now = self._clock()
                pending = bool(self._queue) or self.spool.records > 0
                # Closing: deliver while the store takes documents; at its first refusal stop waiting,
                # what is left is safe in the spool for the next start.
                if self._closing and (not pending or now >= self._deadline or self._retry_at > now):
                    return False
                if not pending:
                    self._idle.notify_all()
                    self._wake.wait()
                    continue
                if self._retry_at > now:
                    if self._queue:
                        self._spill()  # the store is away: what waits, waits on disk
                    self._wake.wait(min(self._retry_at, self._deadline) - now)
                    continue
                break
            if self.spool.records == 0 and 0 < len(self._queue) < self.batch_size and self.linger > 0 \
                    and not self._closing:
                self._wake.wait(self.linger)  # let a batch fill up
            check = self._needs_check
        if check and not self._check():
            return True
        with self._lock:
            if self.spool.records > 0:
                self._spill()
                records = self.spool.peek(self.batch_size, self.batch_bytes)
                if not records:
                    return True
                docs = [decode_document(r.data) for r in records]
                direct = False
            else:
                docs = list(islice(self._queue, self.batch_size))
                records = []
                direct = bool(docs)
                if not docs:
                    return True
            self._inflight = len(docs) if direct else 0
            self._inflight_seqs = None
        try:
            result = self.store.write(docs)
        except StoreError as exc:
            self._write_failed(exc, direct)
            return True
        except Exception as exc:  # noqa: BLE001 - the store broke its contract: find the documents it chokes on
            try:
                result = self._isolate(docs, exc)
            except StoreError as again:
                self._write_failed(again, direct)
                return True
        self._dead_letter(result)
        with self._lock:
            self.written += result.written
            self.batches += 1
            self._failures = 0
            self._retry_at = 0.0
            if direct:
                if self._inflight_seqs is None:
                    for _ in range(self._inflight):
                        self._queue.popleft()
                else:
                    self._ack_through(self._inflight_seqs)
            else:
                self.spool.ack(records)
            self._inflight, self._inflight_seqs = 0, None
            if not self._queue and self.spool.records == 0:
                self._idle.notify_all()
        return True

    def _write_failed(self, exc: StoreError, direct: bool) -> None:
        with self._lock:
            self._failed(exc)
            if direct and self._inflight_seqs is None:
                self._inflight = 0
                self._spill()  # the failed batch is the queue head: it goes to the spool first
            self._inflight, self._inflight_seqs = 0, None

    def _isolate(self, docs: Sequence[Document], first: Exception) -> WriteResult:
        """A store raised something other than a StoreError: write one by one, dead-letter the culprits.

        A StoreError on the way means the store is away after all; it propagates and the batch waits.
        """
        self._error(f"{self.store.name} raised {type(first).__name__}: {first}")
        written = 0
        rejected: list[tuple[Document, str]] = []
        for doc in docs:
            try:
                result = self.store.write([doc])
            except StoreError:
                raise
            except Exception as exc:  # noqa: BLE001
                rejected.append((doc, f"store raised {type(exc).__name__}: {' '.join(str(exc).split())}"))
                continue
            written += result.written
            rejected.extend(result.rejected)
        return WriteResult(written=written, rejected=tuple(rejected))

    def _check(self) -> bool:
        """Run the store's start-up check before the first write; False to retry later."""
        try:
            self.store.check()
        except StoreError as exc:
            with self._lock:
                self._failed(exc)
                if self._queue:
                    self._spill()  # while the store is away everything waits on disk
            return False
        except Exception as exc:  # noqa: BLE001 - treat like an unavailable store, try again later
            with self._lock:
                self._failed(StoreUnavailable(f"{type(exc).__name__}: {exc}"))
            return False
        self._needs_check = False
        return True

    def _ack_through(self, upto: dict[str, int]) -> None:
        """Remove spool head records up to these sequence numbers (a spilled batch the store took)."""
        if upto:
            head = self.spool.peek(self.batch_size)
            self.spool.ack([r for r in head if r.seq <= upto.get(r.kind, -1)])

    def _failed(self, exc: StoreError) -> None:
        self._failures += 1
        self.retries += 1
        delay = min(self.backoff_max, self.backoff_initial * (2 ** min(self._failures - 1, 30)))
        self._retry_at = self._clock() + delay / 2 + self._rng.uniform(0, delay / 2)
        kind = ("authentication" if isinstance(exc, StoreAuthError)
                else "unavailable" if isinstance(exc, StoreUnavailable) else "error")
        self._error(f"{self.store.name} {kind}: {exc}")

    def _error(self, message: str) -> None:
        self.last_error = " ".join(message.split())
        self.last_error_time = time.time()

    def _dead_letter(self, result: WriteResult) -> None:
        if not result.rejected:
            return
        if self._dead_letter_file is None:
            self.dead_letter_path.parent.mkdir(parents=True, exist_ok=True)
            self._dead_letter_file = open(self.dead_letter_path, "ab")
        now = iso_time(time.time())
        out = self._dead_letter_file
        for doc, reason in result.rejected:
            out.write(orjson.dumps({"time": now, "store": self.store.name, "reason": reason, "kind": doc.kind,
                                    "id": doc.id, "version": doc.version, "document": doc.body},
                                   option=orjson.OPT_APPEND_NEWLINE, default=str))
        out.flush()
        os.fsync(out.fileno())
        with self._lock:
            self.dead_letters += len(result.rejected)

    # -- control ---------------------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything put so far is written (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._wake.notify()
            while self._queue or self.spool.records > 0:
                left = deadline - time.monotonic()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._idle.wait(min(left, 0.1))
            return True

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what can be delivered within ``timeout`` seconds; spool the rest; close the spool."""
        with self._lock:
            if self._closing and self.spool.closed:
                return
            self._closing = True
            self._deadline = self._clock() + timeout
            self._wake.notify_all()
        thread = self._thread
        if thread is not None:
            thread.join(timeout + 1.0)
        with self._lock:
            try:
                if self._inflight and self._inflight_seqs is None:
                    self._inflight = 0  # the thread is stuck in a write: keep its batch
                self._spill()
            except SpoolError as exc:
                self._error(str(exc))
            self.spool.close()
            if self._dead_letter_file is not None:
                self._dead_letter_file.close()
                self._dead_letter_file = None

    def __enter__(self) -> Delivery:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- statistics ------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        spool = self.spool.stats()
        return {
            "store": self.store.name,
            "queued": len(self._queue),
            "put": self.put_count,
            "written": self.written,
            "batches": self.batches,
            "spooled": spool["records"],
            "spool_bytes": spool["bytes"],
            "spooled_total": self.spooled_total,
            "dropped_events": spool["dropped_events"],
            "dropped_alerts": spool["dropped_alerts"],
            "spool_torn": spool["torn"],
            "spool_corrupt": spool["corrupt"],
            "dead_letters": self.dead_letters,
            "dead_letter_path": str(self.dead_letter_path) if self.dead_letters else None,
            "retries": self.retries,
            "last_error": self.last_error,
        }
