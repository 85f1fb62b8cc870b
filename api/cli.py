"""The ``icsmon`` command line.

Subcommands: ``read`` (capture files), ``live`` (a mirror port), ``demo``
(a generated plant capture through the whole pipeline), ``bench`` (the
benchmark against tshark) and ``schema`` (the event field reference).

Bad input ends with one line, ``icsmon: error: ...``, and exit status 2,
after every readable packet was processed and the statistics were written.
"""

from __future__ import annotations

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
    """Where stored events go: the volume filter, then the JSON lines file. Detection sees them all."""

    def __init__(self, settings: SensorSettings, path: str | None) -> None:
        self.writer = EventWriter(path) if path else None
        self.volume = VolumeFilter(settings.volume, self.writer) if self.writer else None

    @property
    def sink(self) -> Any:
        return self.volume

    def close(self) -> None:
        if self.volume is not None:
            self.volume.flush()
        if self.writer is not None:
            self.writer.close()

    def stats(self) -> dict[str, int]:
        return self.volume.stats() if self.volume is not None else {}


def _write_stats(sensor: Sensor, path: str | None, quiet: bool, output: _EventOutput | None = None) -> None:
    stats = sensor.stats_dict()
    if output is not None:
        stats["output"] = output.stats()
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
    return "\n".join(lines)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="icsmon")
def main() -> None:
    """icsmon: passive security monitor for industrial (ICS/OT) networks.

    Reads a capture or a mirror (SPAN) port, dissects industrial protocols and
    writes events (JSON lines) and statistics.
    """


_events_opt = click.option("--events", "events_path", metavar="PATH",
                           help="Write events as JSON lines to PATH ('-' for stdout).")
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
@_stats_opt
@_sensor_opt
@_dissect_opt
@_verbosity_opt
@_summary_opt
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@_quiet_opt
def read(captures: tuple[str, ...], events_path: str | None, stats_path: str | None, sensor_id: str | None,
         no_dissect: bool, verbosity: tuple[str, ...], summary: bool | None, no_progress: bool,
         quiet: bool) -> None:
    """Read pcap/pcapng CAPTURE files (in the order given) and report events and statistics."""
    from sensor.capture.pcapfile import open_capture

    settings = _settings(sensor_id, no_dissect, verbosity, summary)
    output = _EventOutput(settings, events_path)
    sensor = Sensor(settings, sink=output.sink)
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
    sensor.capture_errors.extend(errors)
    _write_stats(sensor, stats_path, quiet, output)
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
@_stats_opt
@_sensor_opt
@_dissect_opt
@_verbosity_opt
@_summary_opt
@_quiet_opt
def live(interface: str, bpf: str | None, snaplen: int, count: int | None, duration: float | None,
         events_path: str | None, stats_path: str | None, sensor_id: str | None, no_dissect: bool,
         verbosity: tuple[str, ...], summary: bool | None, quiet: bool) -> None:
    """Capture live from IFACE (promiscuous, receive only) until stopped (Ctrl-C/SIGTERM)."""
    from sensor.capture.live import LiveCapture

    settings = _settings(sensor_id, no_dissect, verbosity, summary)
    try:
        capture = LiveCapture(interface, bpf_filter=bpf, snaplen=snaplen)
    except CaptureError as exc:
        fail(str(exc))
        return
    output = _EventOutput(settings, events_path)
    sensor = Sensor(settings, sink=output.sink)

    def stop(*_: Any) -> None:
        capture.stop()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    timer = threading.Timer(duration, stop) if duration else None
    if timer:
        timer.daemon = True
        timer.start()
    error = None
    try:
        with capture:
            sensor.run(_limited(capture, count) if count else capture)
    except CaptureError as exc:
        error = str(exc)
    finally:
        if timer:
            timer.cancel()
        sensor.finish()
        output.close()
    if error:
        sensor.capture_errors.append(error)
    _write_stats(sensor, stats_path, quiet, output)
    if error:
        fail(error)


def _limited(capture: Any, count: int) -> Iterator[Packet]:
    for n, packet in enumerate(capture, 1):
        yield packet
        if n >= count:
            capture.stop()
            return


@main.command()
@click.option("--workdir", type=click.Path(file_okay=False), help="Keep the demo capture and events here.")
@click.option("--events", "show_events", type=click.IntRange(0), default=8, show_default=True,
              help="How many protocol events to print.")
def demo(workdir: str | None, show_events: int) -> None:
    """Generate a small synthetic plant capture and run the sensor on it."""
    import tempfile

    from sensor.capture.pcapfile import open_capture
    from sensor.demo import write_demo_capture

    with tempfile.TemporaryDirectory(prefix="icsmon-demo-") as tmp:
        out = Path(workdir) if workdir else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        capture = out / "demo-plant.pcap"
        started = time.perf_counter()
        described = write_demo_capture(capture)
        click.echo(f"generated {capture} in {time.perf_counter() - started:.1f} s: {described}", err=True)
        events_file = out / "events.jsonl"
        writer = EventWriter(events_file)
        shown: list[dict[str, Any]] = []

        def sink(event: dict[str, Any]) -> None:
            writer(event)
            if len(shown) < show_events and event["event.dataset"] not in ("icsmon.conn",):
                shown.append(event)

        sensor = Sensor(_settings(None, False).model_copy(update={"sensor_id": "demo-sensor"}), sink=sink)
        with open_capture(capture) as source:
            sensor.run(source)
        sensor.finish()
        writer.close()
        click.echo(f"\nFirst {len(shown)} protocol events:")
        for event in shown:
            click.echo("  " + _one_line(event))
        stats = sensor.stats_dict()
        click.echo("\nStatistics:")
        click.echo("  " + summary(stats).replace("\n", "\n  "))
        where = str(events_file) if workdir else "deleted with the temporary directory; keep them with --workdir DIR"
        click.echo(f"\nAll {stats['events']:,} events as JSON lines: {where}")


def _one_line(event: dict[str, Any]) -> str:
    keys = ("source.ip", "destination.ip", "ics.role", "ics.function", "ics.unit", "ics.address_start",
            "ics.address_count", "ics.status")
    parts = [f"{event.get('network.protocol', '?')}"]
    parts += [f"{k.split('.')[-1]}={event[k]}" for k in keys if k in event]
    return " ".join(parts)


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
