"""The ``icsmon`` command line.

Subcommands: ``read`` (capture files), ``live`` (a mirror port), ``demo``
(a generated plant capture through the whole pipeline), ``rules`` (lint, test,
convert and scaffold Sigma rules; :mod:`api.rules_cli`), ``bench`` (the
benchmark against tshark), ``diff`` (field-by-field comparison with Wireshark)
and ``schema`` (the event field reference).

Bad input ends with one line, ``icsmon: error: ...``, and exit status 2,
after every readable packet was processed and the statistics were written.

``read``, ``live`` and ``demo`` run the analyzer on every event and deliver
alerts (and the events the volume settings keep) to the configured store:
the embedded SQLite database when nothing is configured, Elasticsearch when
``ICSMON_ANALYZER__ELASTICSEARCH__URL`` (or ``analyzer.elasticsearch.url``) is
set. The store is checked at start-up: wrong credentials or missing
privileges end the run at once with one error line and exit status 2; an
unreachable store is reported once and everything waits in the on-disk spool
until it answers (see :mod:`analyzer.delivery`).
"""

from __future__ import annotations

import importlib
import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from sensor.capture import CaptureError, Packet
from sensor.events import EventWriter
from sensor.pipeline import Sensor
from sensor.settings import SensorSettings, VolumeSettings
from sensor.volume import VolumeFilter

EXIT_BAD_INPUT = 2


def fail(message: str) -> None:
    click.echo(f"icsmon: error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


def _settings(sensor_id: str | None, no_dissect: bool, verbosity: tuple[str, ...] = (),
              summary: bool | None = None) -> SensorSettings:
    from api.settings import Settings

    try:
        sensor = Settings().sensor
    except Exception as exc:  # noqa: BLE001 - pydantic's message names the bad variable
        fail(f"bad configuration: {' '.join(str(exc).split())}")
        raise  # unreachable
    updates: dict[str, Any] = {}
    if sensor_id:
        updates["sensor_id"] = sensor_id
    if no_dissect:
        updates["dissect"] = False
    if verbosity or summary is not None:
        updates["volume"] = _volume(sensor.volume, verbosity, summary)
    return sensor.model_copy(update=updates)


_LEVELS = ("all", "no_routine", "none")


def _volume(current: VolumeSettings, verbosity: tuple[str, ...], summary: bool | None) -> VolumeSettings:
    """Apply ``--verbosity [PROTOCOL=]LEVEL`` and ``--summary`` on top of the configured volume settings."""
    values = current.model_dump()
    for item in verbosity:
        protocol, _, level = item.rpartition("=")
        if level not in _LEVELS:
            fail(f"--verbosity {item}: level must be one of {', '.join(_LEVELS)}")
        if protocol:
            values["protocols"][protocol] = level
        else:
            values["default"] = level
    if summary is not None:
        values["summary"] = summary
        if summary and not verbosity and current.default == "all" and not current.protocols:
            values["default"] = "no_routine"  # --summary alone: fold the routine polling
    return VolumeSettings(**values)


class _EventOutput:
    """Where stored events go: the volume filter, then the JSON lines file and the store. Detection sees them all."""

    def __init__(self, settings: SensorSettings, path: str | None, store: Any = None) -> None:
        self.writer = EventWriter(path) if path else None
        targets = [t for t in (self.writer, store) if t is not None]
        downstream: Any = None
        if len(targets) == 1:
            downstream = targets[0]
        elif targets:
            writer, to_store = targets

            def downstream(event: dict[str, Any]) -> None:
                writer(event)
                to_store(event)

        self.volume = VolumeFilter(settings.volume, downstream) if downstream is not None else None

    @property
    def sink(self) -> Any:
        return self.volume

    def flush_file(self) -> None:
        """Make the lines written so far visible to readers of the events file."""
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.volume is not None:
            self.volume.flush()
        if self.writer is not None:
            self.writer.close()

    def stats(self) -> dict[str, int]:
        return self.volume.stats() if self.volume is not None else {}


def _write_stats(sensor: Sensor, path: str | None, quiet: bool, output: _EventOutput | None = None,
                 analysis: _Analysis | None = None) -> None:
    stats = sensor.stats_dict()
    if output is not None:
        stats["output"] = output.stats()
    if analysis is not None:
        stats.update(analysis.stats())
    if path:
        text = json.dumps(stats, indent=2, sort_keys=True) + "\n"
        if path == "-":
            sys.stdout.write(text)
        else:
            Path(path).write_text(text)
    if not quiet:
        click.echo(summary(stats), err=True)


def summary(stats: dict[str, Any]) -> str:
    """A few human lines about a run (stderr)."""
    flows = stats["flows"]
    lines = [
        f"packets {stats['packets']:,}  bytes {stats['bytes']:,}  "
        f"{stats['packets_per_second']:,.0f} packets/s over {stats['elapsed_seconds']:.2f} s",
        f"flows {flows['created']:,} created, {flows['ended']:,} ended "
        f"({flows['timed_out']:,} timed out, {flows['evicted']:,} evicted)",
        f"events {stats['events']:,}: " + ", ".join(f"{k} {v:,}" for k, v in
                                                    sorted(stats['events_by_dataset'].items())),
    ]
    protos = {k: v for k, v in stats["protocols"].items() if v["flows"] or v["violations"]}
    if protos:
        lines.append("protocols: " + ", ".join(
            f"{k} {v['flows']:,} flows/{v['events']:,} events" + (f"/{v['violations']} violations"
                                                                   if v["violations"] else "")
            for k, v in protos.items()))
    if stats["decode_errors"]:
        lines.append("decode errors: " + ", ".join(f"{k} {v:,}" for k, v in
                                                   sorted(stats["decode_errors"].items())))
    drops = stats["drops"]
    if drops["kernel"] or drops["interface"]:
        lines.append(f"drops: kernel {drops['kernel']:,}, interface {drops['interface']:,}")
    analyzer, delivery = stats.get("analyzer"), stats.get("delivery")
    if analyzer is not None:
        line = (f"alerts {analyzer['alerts_raised']:,} raised, {analyzer['alerts_updated']:,} updates"
                f" from {analyzer['detections']:,} detections")
        if analyzer["detector_errors"]:
            line += " (detector errors: " + ", ".join(f"{k} {v:,}" for k, v in
                                                      sorted(analyzer["detector_errors"].items())) + ")"
        lines.append(line)
    if delivery is not None:
        line = (f"delivery to {delivery['store']}: {delivery['written']:,} written, {delivery['spooled']:,} in the"
                f" spool ({delivery['spool_bytes']:,} bytes), {delivery['retries']:,} retries")
        dropped = delivery["dropped_events"] + delivery["dropped_alerts"]
        if dropped:
            line += f", dropped {delivery['dropped_alerts']:,} alerts and {delivery['dropped_events']:,} events"
        if delivery["dead_letters"]:
            line += f", {delivery['dead_letters']:,} dead letters in {delivery['dead_letter_path']}"
        lines.append(line)
        if delivery["last_error"]:
            lines.append(f"delivery: last error: {delivery['last_error']}")
    return "\n".join(lines)


def _analyzer_settings() -> tuple[Any, Any]:
    """The analyzer's settings and its delivery settings, from the environment."""
    from api.settings import Settings

    try:
        analyzer = Settings().analyzer
    except Exception as exc:  # noqa: BLE001 - pydantic's message names the bad variable
        fail(f"bad configuration: {' '.join(str(exc).split())}")
        raise  # unreachable
    return analyzer, analyzer.delivery


def _open_store(settings: Any) -> Any:
    from analyzer.stores import StoreError

    try:
        if settings.store_kind == "elasticsearch":
            from analyzer.stores.elasticsearch import ElasticsearchStore

            return ElasticsearchStore(settings.elasticsearch)
        from analyzer.stores.sqlite import SQLiteStore

        return SQLiteStore(settings.sqlite)
    except StoreError as exc:
        fail(str(exc))


def _rule_detectors(settings: Any, placeholders: dict[str, list[str]] | None, watch: bool
                    ) -> tuple[list[Any], Any, str]:
    """The Sigma rule pack (and the site's rules) as the detector, and one warning line about rules not loaded."""
    if not settings.enabled:
        return [], None, ""
    from analyzer.detect import rule_detector
    from analyzer.sigma import RuleWatcher, load_placeholders

    if placeholders is None and settings.placeholders is not None:
        try:
            placeholders = load_placeholders(settings.placeholders)
        except (OSError, ValueError) as exc:
            fail(f"rules placeholders {settings.placeholders}: {' '.join(str(exc).split())}")
    paths = settings.all_paths()
    detector, ruleset = rule_detector(paths, placeholders)
    if ruleset.errors:
        unset = sum("is not configured" in e.reason for e in ruleset.errors)
        hint = (f"; {unset} need placeholder values (set ICSMON_ANALYZER__RULES__PLACEHOLDERS to a file like"
                " deploy/placeholders.yml)" if unset else "")
        warning = (f"icsmon: warning: {len(ruleset.errors)} of {len(ruleset.errors) + len(ruleset.rules)} rules"
                   f" not loaded{hint}; first: {ruleset.errors[0]}")
    else:
        warning = ""
    watcher = None
    if watch and settings.watch:
        watcher = RuleWatcher(detector.engine, paths, settings.placeholders or placeholders)
        watcher.install_sighup()
        watcher.start()
    return [detector], watcher, warning


class _Analysis:
    """Detection on every event, the ``--alerts`` file, and delivery to the configured store."""

    def __init__(self, alerts_path: str | None, spool_dir: Path | None = None,
                 placeholders: dict[str, list[str]] | None = None, watch: bool = False) -> None:
        from analyzer.delivery import Delivery
        from analyzer.detect import AlertWriter, Analyzer
        from analyzer.spool import SpoolError, open_slot
        from analyzer.stores import StoreError, StoreUnavailable

        analyzer_settings, settings = _analyzer_settings()
        self.settings = settings
        detectors, self.watcher, rules_warning = _rule_detectors(analyzer_settings.rules, placeholders, watch)
        spool_dir = spool_dir or settings.spool_dir
        store = _open_store(analyzer_settings)
        check_first = False
        try:
            store.check()
        except StoreUnavailable as exc:
            click.echo(f"icsmon: warning: {exc}; keeping alerts and events in the spool {spool_dir}"
                       " until it answers", err=True)
            check_first = True
        except StoreError as exc:  # wrong credentials, missing privileges, TLS, a broken database: no retrying
            store.close()
            fail(str(exc))
        try:
            spool = open_slot(spool_dir, max_bytes=settings.spool_max_bytes)
        except (SpoolError, OSError, ValueError) as exc:
            store.close()
            fail(str(exc))
        try:
            self.writer = AlertWriter(alerts_path) if alerts_path else None
        except OSError as exc:
            spool.close()
            store.close()
            fail(f"--alerts {alerts_path}: {exc.strerror or exc}")
        self.store = store
        self.delivery = Delivery(store, spool, settings.dead_letter, batch_size=settings.batch_size,
                                 queue_size=settings.queue_size, backoff_initial=settings.backoff_initial,
                                 backoff_max=settings.backoff_max, check_first=check_first).start()
        self.analyzer = Analyzer(detectors, deliver=self.delivery.put,
                                 alert_outputs=[self.writer] if self.writer else [],
                                 update_interval=settings.update_interval)
        self.events = settings.events and getattr(store, "events_enabled", True)
        self.closed = False
        if rules_warning:  # after every check that may end the run: an error stays the only line
            click.echo(rules_warning, err=True)

    @property
    def event_store_sink(self) -> Any:
        """Behind the volume filter: the events that are kept go to the store too."""
        return self.analyzer.deliver_event if self.events else None

    def sink(self, output: _EventOutput) -> Any:
        """The sensor's sink: detection on every event, then the event outputs."""
        detect = self.analyzer
        store = output.sink
        if store is None:
            return detect

        def sink(event: dict[str, Any]) -> None:
            detect(event)
            store(event)

        return sink

    def close(self) -> None:
        """Hand on the final state of open alerts, deliver within the deadline, spool the rest."""
        if self.closed:
            return
        self.closed = True
        self.analyzer.finish()
        self.delivery.close(self.settings.close_timeout)
        self.store.close()
        if self.writer is not None:
            self.writer.close()
        left = self.delivery.stats()["spooled"]
        if left:
            click.echo(f"icsmon: warning: {left:,} documents wait in the spool {self.delivery.spool.path} for"
                       f" {self.store.name} ({self.delivery.last_error or 'not delivered in time'}); the next"
                       " start delivers them", err=True)

    def stats(self) -> dict[str, Any]:
        return {"analyzer": self.analyzer.stats(), "delivery": self.delivery.stats()}


class _Commands(click.Group):
    """The command group; ``rules`` (pySigma and the rule tooling) is imported only when it is used."""

    LAZY = {"rules": ("api.rules_cli", "rules")}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.LAZY and cmd_name not in self.commands:
            module, attribute = self.LAZY[cmd_name]
            self.add_command(getattr(importlib.import_module(module), attribute), name=cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="icsmon")
def main() -> None:
    """icsmon: passive security monitor for industrial (ICS/OT) networks.

    Reads a capture or a mirror (SPAN) port, dissects industrial protocols,
    writes events (JSON lines) and statistics, and delivers alerts to the store
    (embedded SQLite by default, Elasticsearch when configured).
    """


_events_opt = click.option("--events", "events_path", metavar="PATH",
                           help="Write events as JSON lines to PATH ('-' for stdout).")
_alerts_opt = click.option(
    "--alerts", "alerts_path", metavar="PATH",
    help="Also write alerts as JSON lines to PATH ('-' for stdout): each new alert at once, an alert that keeps"
    " being updated at most once a second, and its final state at the end; the last line of an id is its state.")
_stats_opt = click.option("--stats", "stats_path", metavar="PATH",
                          help="Write end-of-run statistics as one JSON object to PATH ('-' for stdout).")
_sensor_opt = click.option("--sensor-id", metavar="ID", help="observer.id of the events (default: host name).")
_dissect_opt = click.option("--no-dissect", is_flag=True,
                            help="Flows only: decode, track and reassemble, but run no protocol dissector.")
_quiet_opt = click.option("-q", "--quiet", is_flag=True, help="No summary on stderr.")
_verbosity_opt = click.option(
    "--verbosity", multiple=True, metavar="[PROTOCOL=]LEVEL",
    help="Which protocol events reach --events: all, no_routine (drop successful reads and reports) or none;"
    " with PROTOCOL= for one protocol (repeatable). Detection always sees every event.")
_summary_opt = click.option(
    "--summary/--no-summary", default=None,
    help="Fold the events --verbosity drops into periodic summaries with counts and value ranges"
    " (alone: --verbosity no_routine --summary).")


@main.command()
@click.argument("captures", nargs=-1, required=True, metavar="CAPTURE...")
@_events_opt
@_alerts_opt
@_stats_opt
@_sensor_opt
@_dissect_opt
@_verbosity_opt
@_summary_opt
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option("--no-detect", is_flag=True, help="Sensor only: no rules, no alerts, nothing delivered to a store.")
@_quiet_opt
def read(captures: tuple[str, ...], events_path: str | None, alerts_path: str | None, stats_path: str | None,
         sensor_id: str | None, no_dissect: bool, verbosity: tuple[str, ...], summary: bool | None,
         no_progress: bool, no_detect: bool, quiet: bool) -> None:
    """Read pcap/pcapng CAPTURE files (in the order given): events, alerts to the store, statistics."""
    from sensor.capture.pcapfile import open_capture

    if no_detect and alerts_path:
        fail("--alerts needs detection: drop --no-detect")
    settings = _settings(sensor_id, no_dissect, verbosity, summary)
    analysis = None if no_detect else _Analysis(alerts_path)
    output = _EventOutput(settings, events_path, analysis.event_store_sink if analysis else None)
    sensor = Sensor(settings, sink=analysis.sink(output) if analysis else output.sink)
    errors: list[str] = []
    try:
        for path in captures:
            try:
                source = open_capture(path)
            except CaptureError as exc:
                errors.append(str(exc))
                continue
            with source:
                bar = _progress_bar(source, quiet or no_progress)
                try:
                    sensor.run(source, progress=bar.update_to if bar else None)
                except CaptureError as exc:
                    errors.append(str(exc))
                finally:
                    if bar:
                        bar.close()
        sensor.finish()
    finally:
        output.close()
        if analysis is not None:
            analysis.close()
    sensor.capture_errors.extend(errors)
    _write_stats(sensor, stats_path, quiet, output, analysis)
    if errors:
        fail(errors[0] if len(errors) == 1 else f"{errors[0]} (and {len(errors) - 1} more)")


class _Progress:
    """A tqdm bar over the bytes of a capture file, updated every few thousand packets."""

    def __init__(self, source: Any) -> None:
        from tqdm import tqdm

        self.source = source
        self.bar = tqdm(total=source.size, unit="B", unit_scale=True, desc=Path(source.path).name,
                        file=sys.stderr, leave=False)

    def update_to(self, _packets: int) -> None:
        self.bar.update(self.source.bytes_read - self.bar.n)

    def close(self) -> None:
        self.bar.close()


def _progress_bar(source: Any, disabled: bool) -> _Progress | None:
    if disabled or not sys.stderr.isatty() or not getattr(source, "size", 0):
        return None
    return _Progress(source)


@main.command()
@click.option("-i", "--interface", required=True, metavar="IFACE", help="Interface to capture on (the mirror port).")
@click.option("-f", "--filter", "bpf", metavar="BPF", help="Capture filter in tcpdump syntax.")
@click.option("--snaplen", type=click.IntRange(64, 262144), default=65535, show_default=True)
@click.option("-c", "--count", type=click.IntRange(1), help="Stop after this many packets.")
@click.option("--duration", type=click.FloatRange(0, min_open=True), help="Stop after this many seconds.")
@_events_opt
@_alerts_opt
@_stats_opt
@_sensor_opt
@_dissect_opt
@_verbosity_opt
@_summary_opt
@_quiet_opt
def live(interface: str, bpf: str | None, snaplen: int, count: int | None, duration: float | None,
         events_path: str | None, alerts_path: str | None, stats_path: str | None, sensor_id: str | None,
         no_dissect: bool, verbosity: tuple[str, ...], summary: bool | None, quiet: bool) -> None:
    """Capture live from IFACE (promiscuous, receive only) until stopped (Ctrl-C/SIGTERM)."""
    from sensor.capture.live import LiveCapture

    settings = _settings(sensor_id, no_dissect, verbosity, summary)
    capture: LiveCapture | None = None
    stopped = threading.Event()

    def stop(*_: Any) -> None:
        stopped.set()
        if capture is not None:
            capture.stop()

    # From the moment the interface opens, packets queue in the ring: a stop that comes while the
    # rules load still ends the run cleanly and drains them.
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:  # the interface first: a wrong name or missing capability is the only line printed
        capture = LiveCapture(interface, bpf_filter=bpf, snaplen=snaplen)
    except CaptureError as exc:
        fail(str(exc))
        return
    if stopped.is_set():  # a stop came while the interface opened
        capture.stop()
    try:
        analysis = _Analysis(alerts_path, watch=True)
    except BaseException:
        capture.close()
        raise
    output = _EventOutput(settings, events_path, analysis.event_store_sink)
    sensor = Sensor(settings, sink=analysis.sink(output))
    capture.housekeeping = analysis.analyzer.tick  # alert updates go out while the link is quiet too
    timer = threading.Timer(duration, stop) if duration else None
    if timer:
        timer.daemon = True
        timer.start()
    flusher = _Every(EVENTS_FILE_DELAY, output.flush_file)  # a quiet link must not hold events back
    error = None
    try:
        with capture:
            sensor.run(_limited(capture, count) if count else capture)
    except CaptureError as exc:
        error = str(exc)
    finally:
        flusher.stop()
        if timer:
            timer.cancel()
        sensor.finish()
        output.close()
        analysis.close()
    if error:
        sensor.capture_errors.append(error)
    _write_stats(sensor, stats_path, quiet, output, analysis)
    if error:
        fail(error)


EVENTS_FILE_DELAY = 1.0
"""Seconds at most between an event of ``icsmon live`` and its line in the events file."""


class _Every:
    """Calls ``action`` every ``seconds`` on a daemon thread until :meth:`stop`."""

    def __init__(self, seconds: float, action: Any) -> None:
        self._stopped = threading.Event()

        def loop() -> None:
            while not self._stopped.wait(seconds):
                action()

        self._thread = threading.Thread(target=loop, name="icsmon-flush", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()


def _limited(capture: Any, count: int) -> Iterator[Packet]:
    for n, packet in enumerate(capture, 1):
        yield packet
        if n >= count:
            capture.stop()
            return


@main.command()
@click.option("--workdir", type=click.Path(file_okay=False), help="Keep the demo capture and events here.")
@click.option("--events", "show_events", type=click.IntRange(0), default=3, show_default=True,
              help="How many events of each protocol to print.")
def demo(workdir: str | None, show_events: int) -> None:
    """Generate a small synthetic plant capture and run the sensor on it."""
    import tempfile

    from sensor.capture.pcapfile import open_capture
    from sensor.demo import DEFAULT_CONVERSATIONS, HOSTS, write_demo_capture
    from sensor.demo_attack import ATTACK_CONVERSATIONS, attack_hosts

    with tempfile.TemporaryDirectory(prefix="icsmon-demo-") as tmp:
        out = Path(workdir) if workdir else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        capture = out / "demo-plant.pcap"
        started = time.perf_counter()
        described = write_demo_capture(capture, conversations=DEFAULT_CONVERSATIONS + ATTACK_CONVERSATIONS,
                                       hosts=attack_hosts(HOSTS))
        click.echo(f"generated {capture} in {time.perf_counter() - started:.1f} s: {described}", err=True)
        events_file = out / "events.jsonl"
        alerts_file = out / "alerts.jsonl"
        writer = EventWriter(events_file)
        # The demo's own spool: a sensor running on this machine keeps the default one.
        analysis = _Analysis(str(alerts_file), spool_dir=out / "spool", placeholders=_demo_placeholders())
        to_store = analysis.event_store_sink
        shown: dict[str, list[dict[str, Any]]] = {}  # the first protocol events of each protocol

        def sink(event: dict[str, Any]) -> None:
            analysis.analyzer(event)
            writer(event)
            if to_store is not None:
                to_store(event)
            protocol = event.get("network.protocol")
            if protocol and event["event.dataset"] == f"icsmon.{protocol}":
                first = shown.setdefault(protocol, [])
                if len(first) < show_events:
                    first.append(event)

        sensor = Sensor(_settings(None, False).model_copy(update={"sensor_id": "demo-sensor"}), sink=sink)
        try:
            with open_capture(capture) as source:
                sensor.run(source)
            sensor.finish()
        finally:
            writer.close()
            analysis.close()
        click.echo(f"\nFirst {show_events} events of each protocol:")
        for protocol in sorted(shown):
            for event in shown[protocol]:
                click.echo("  " + _one_line(event))
        alerts = _final_alerts(alerts_file)
        click.echo(f"\n{len(alerts)} alerts (delivered to the {analysis.store.name} store"
                   f"{' ' + str(getattr(analysis.store, 'path', '')) if analysis.store.name == 'sqlite' else ''}):")
        for alert in alerts:
            click.echo("  " + _alert_line(alert))
        stats = sensor.stats_dict()
        stats.update(analysis.stats())
        click.echo("\nStatistics:")
        click.echo("  " + summary(stats).replace("\n", "\n  "))
        where = (f"{events_file} and {alerts_file}" if workdir
                 else "deleted with the temporary directory; keep them with --workdir DIR")
        click.echo(f"\nAll {stats['events']:,} events and the alerts as JSON lines: {where}")


def _demo_placeholders() -> dict[str, list[str]]:
    """The demo plant's control stations, engineering workstation... (deploy/placeholders.yml)."""
    from analyzer.sigma import load_placeholders

    return load_placeholders(Path(__file__).resolve().parents[1] / "deploy" / "placeholders.yml")


def _final_alerts(path: Path) -> list[dict[str, Any]]:
    """The last state of each alert in an ``--alerts`` file, most severe first."""
    final: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        alert = json.loads(line)
        held = final.get(alert["_id"])
        if held is None or alert["icsmon.alert.version"] >= held["icsmon.alert.version"]:
            final[alert["_id"]] = alert
    return sorted(final.values(), key=lambda a: (-a["event.severity"], a["icsmon.alert.first_seen"]))


def _alert_line(alert: dict[str, Any]) -> str:
    techniques = ",".join(alert.get("threat.technique.id", []))
    return (f"{alert['icsmon.alert.severity']:<8} {alert['rule.name']}: {alert.get('source.ip')} -> "
            f"{alert.get('destination.ip')} {alert.get('network.protocol', '')} x{alert['icsmon.alert.count']}"
            + (f" [{techniques}]" if techniques else ""))


def _one_line(event: dict[str, Any]) -> str:
    """``modbus 10.10.1.10 -> 10.10.2.11 request read_holding_registers unit=1 address_start=0 ...``."""
    direction = event.get("network.direction")
    client, server = event.get("source.ip", "?"), event.get("destination.ip", "?")
    sender, receiver = (server, client) if direction == "to_client" else (client, server)
    parts = [f"{event.get('network.protocol', '?'):<7} {sender} -> {receiver}", str(event.get("ics.role", "")),
             str(event.get("ics.function", event.get("event.action", "")))]
    parts += [f"{k.split('.')[-1]}={event[k]}" for k in _SHOWN if k in event]
    return " ".join(parts)


_SHOWN = ("ics.unit", "ics.address_start", "ics.address_count", "ics.status")


@main.command()
@click.option("--packets", type=click.IntRange(1000), default=1_000_000, show_default=True,
              help="Packets in the generated benchmark capture.")
@click.option("--workdir", type=click.Path(file_okay=False), help="Where to build the capture.")
@click.option("--keep", is_flag=True, help="Keep the generated captures.")
@click.option("--protocol-packets", type=click.IntRange(0), default=200_000, show_default=True,
              help="Packets in each per-protocol capture (0: no per-protocol table).")
def bench(packets: int, workdir: str | None, keep: bool, protocol_packets: int) -> None:
    """Measure packets/s and peak memory side by side with tshark on the same capture."""
    from sensor.bench import main_bench

    sys.exit(main_bench(packets, workdir, keep, protocol_packets))


@main.command()
@click.option("--format", "fmt", type=click.Choice(["markdown", "json", "elasticsearch"]),
              default="markdown", show_default=True)
def schema(fmt: str) -> None:
    """Print the event schema: field reference, field list, or Elasticsearch mapping."""
    from sensor import schema as event_schema

    if fmt == "markdown":
        click.echo(event_schema.markdown_reference(), nl=False)
    elif fmt == "json":
        click.echo(json.dumps([f.to_dict() for f in event_schema.all_fields()], indent=2))
    else:
        click.echo(json.dumps(event_schema.elasticsearch_mapping(), indent=2))


@main.command()
@click.argument("captures", nargs=-1, required=True, metavar="CAPTURE...")
@click.option("-p", "--protocol", "protocols", multiple=True, metavar="NAME",
              help="Compare this protocol only (repeatable; default: every protocol with a Wireshark mapping).")
@click.option("--known", "known_path", metavar="PATH",
              help="Reviewed list of known differences (TSV: capture, protocol, frame, field, reason).")
@click.option("--report", "report_path", metavar="PATH", help="Also write the Markdown report to PATH.")
@click.option("--target", default=0.99, show_default=True, type=click.FloatRange(0, 1),
              help="Agreement every compared field must reach.")
def diff(captures: tuple[str, ...], protocols: tuple[str, ...], known_path: str | None, report_path: str | None,
         target: float) -> None:
    """Compare icsmon's key protocol fields with Wireshark's (tshark), frame by frame.

    Prints agreement per protocol and field and every difference not on the reviewed list.
    Exits 1 when a field is below --target or a difference is unexplained, 2 on bad input.
    """
    from sensor.differential import DifferentialError, compare_captures, load_known

    paths = [Path(c) for c in captures]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        fail(f"{missing[0]}: no such capture file")
    try:
        known = load_known(Path(known_path)) if known_path else []
        report = compare_captures(paths, protocols or None, known=known)
    except (DifferentialError, CaptureError, OSError) as exc:
        fail(str(exc))
    text = report.markdown(target)
    click.echo(text, nl=False)
    if report_path:
        Path(report_path).write_text(text)
    if report.below(target) or report.unexplained:
        sys.exit(1)


if __name__ == "__main__":
    main()
