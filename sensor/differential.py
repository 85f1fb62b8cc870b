"""Differential testing against Wireshark: icsmon's key protocol fields, frame by frame, against tshark's.

Each dissector names, in ``DISSECTOR.wireshark``, the tshark fields that carry the
same raw values as its own key fields. For one capture the harness

1. runs the sensor and collects, per protocol, frame number (``icsmon.packet``)
   and key field, the values of the protocol's events (lists flattened);
2. runs tshark once over the capture with every mapped field of every protocol
   (``-T fields -E occurrence=a``), restricted by the protocols' display filters,
   and collects the same per frame;
3. compares, for every frame where either side has a value of a key field, the
   two multisets of values. Equal multisets are an agreement; anything else is a
   :class:`Difference`.

Values are normalised before comparing: anything that parses as an integer in
any base tshark prints (``0x1f``, ``31``) is that integer, booleans are 0/1,
other numbers are rounded floats, the rest is text.

A reviewed list of known differences (tab-separated: capture path relative to
the captures root or ``*``, protocol, frame or ``*``, field or ``*``, reason) marks
differences that are understood, for example where Wireshark's dissector is
wrong. The report gives agreement per protocol and field, over all captures,
and lists every difference not on that list.

A flow the sensor found on a non-standard port is handed to tshark with
``-d`` (decode as) when the protocol names its Wireshark dissector in
``WiresharkFields.decode_as``, so both sides look at the same traffic.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

from sensor.capture import CaptureError
from sensor.capture.pcapfile import open_capture
from sensor.dissect import Dissector
from sensor.pipeline import Sensor
from sensor.protocols import registry
from sensor.settings import SensorSettings

__all__ = ["Agreement", "Difference", "DifferentialError", "KnownDifference", "Report", "compare_captures",
           "load_known", "normalise"]

_AGGREGATOR = "\x1f"  # between occurrences of one field in one frame: never part of a value
Value = int | float | str
FrameValues = dict[int, dict[str, list[Value]]]  # frame -> icsmon field -> values


class DifferentialError(Exception):
    """tshark is missing or refuses its arguments, or a known-differences file is malformed."""


@dataclass(frozen=True, slots=True)
class Difference:
    capture: str
    protocol: str
    frame: int
    field: str
    wireshark_field: str
    ours: tuple[Value, ...]
    theirs: tuple[Value, ...]
    reason: str = ""  # from the known-differences list; empty when nobody has explained it

    def describe(self) -> str:
        ours = ", ".join(map(str, self.ours)) or "-"
        theirs = ", ".join(map(str, self.theirs)) or "-"
        return (f"{self.capture} frame {self.frame} {self.protocol} {self.field}: icsmon [{ours}]"
                f" vs {self.wireshark_field} [{theirs}]")


@dataclass(slots=True)
class Agreement:
    protocol: str
    field: str
    wireshark_field: str
    frames: int = 0
    agreed: int = 0
    known: int = 0  # disagreements on the reviewed list

    @property
    def share(self) -> float:
        """Agreement over the frames not on the reviewed list (those are counted and shown apart)."""
        compared = self.frames - self.known
        return self.agreed / compared if compared else 1.0


@dataclass(frozen=True, slots=True)
class KnownDifference:
    capture: str
    protocol: str
    frame: str
    field: str
    reason: str

    def covers(self, diff: Difference) -> bool:
        """Capture globs match the whole name or its tail; ``frame`` is ``*`` or comma-separated numbers."""
        capture = fnmatch(diff.capture, self.capture) or fnmatch(diff.capture, "*/" + self.capture)
        return (capture and self.protocol in ("*", diff.protocol) and fnmatch(diff.field, self.field)
                and (self.frame == "*" or str(diff.frame) in self.frame.split(",")))


@dataclass(slots=True)
class Report:
    captures: list[str] = field(default_factory=list)
    agreements: dict[tuple[str, str], Agreement] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)  # all, known ones carry their reason

    @property
    def unexplained(self) -> list[Difference]:
        return [d for d in self.differences if not d.reason]

    def below(self, target: float) -> list[Agreement]:
        return [a for a in self.agreements.values() if a.frames and a.share < target]

    def markdown(self, target: float = 0.99, shown: int = 50) -> str:
        lines = [f"# icsmon vs Wireshark: key fields frame by frame ({len(self.captures)} captures)", "",
                 "| protocol | icsmon field | tshark field | frames | agree | known | agreement |",
                 "|---|---|---|---:|---:|---:|---:|"]
        for (protocol, name), a in sorted(self.agreements.items()):
            flag = "" if a.share >= target else " (below target)"
            lines.append(f"| {protocol} | `{name}` | `{a.wireshark_field}` | {a.frames} | {a.agreed} |"
                         f" {a.known} | {100 * a.share:.2f}%{flag} |")
        unexplained = self.unexplained
        lines += ["", f"Differences: {len(self.differences)}, of them on the reviewed list:"
                  f" {len(self.differences) - len(unexplained)}, unexplained: {len(unexplained)}."]
        if unexplained:
            lines += ["", "## Unexplained differences" + (f" (first {shown})" if len(unexplained) > shown else ""),
                      ""]
            lines += [f"- {d.describe()}" for d in unexplained[:shown]]
        reasons: dict[str, int] = {}
        for d in self.differences:
            if d.reason:
                reasons[d.reason] = reasons.get(d.reason, 0) + 1
        if reasons:
            lines += ["", "## Known differences by reason", ""]
            lines += [f"- {n} x {reason}" for reason, n in sorted(reasons.items(), key=lambda r: -r[1])]
        return "\n".join(lines) + "\n"


def normalise(value: Any) -> Value:
    """One comparable form for a value from either side."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else round(value, 4)
    text = str(value).strip()
    if text in ("True", "False"):
        return int(text == "True")
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return int(number) if number.is_integer() else round(number, 4)


def load_known(path: Path) -> list[KnownDifference]:
    """The reviewed list: ``capture  protocol  frame  field  reason`` per line, tab-separated, # comments."""
    known: list[KnownDifference] = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cells = line.split("\t")
        if len(cells) != 5 or not cells[4].strip():
            raise DifferentialError(f"{path}:{number}: expected 5 tab-separated columns ending in a reason")
        known.append(KnownDifference(*(c.strip() for c in cells)))
    return known


def _field_and_role(key: str) -> tuple[str, str]:
    """``modbus.address@request`` -> (``modbus.address``, ``request``): compare requests only."""
    name, _, role = key.partition("@")
    return name, role


def _ours(capture: Path, dissectors: Sequence[Dissector]) -> tuple[dict[str, FrameValues], set[tuple[str, str, int]]]:
    """Per protocol, per frame, per key field: our values; and (protocol, transport, port) of non-standard ports."""
    wanted = {d.name: tuple((key, *_field_and_role(key), d.wireshark.when.get(key)) for key in d.wireshark.fields)
              for d in dissectors if d.wireshark}
    standard = {d.name: (d.tcp_ports, d.udp_ports) for d in dissectors}
    found: dict[str, FrameValues] = {name: {} for name in wanted}
    odd_ports: set[tuple[str, str, int]] = set()

    def sink(event: dict[str, Any]) -> None:
        protocol = event.get("network.protocol")
        keys = wanted.get(protocol)  # type: ignore[arg-type]
        frame = event.get("icsmon.packet")
        if keys is None or frame is None or event.get("event.dataset") == "icsmon.decode_error":
            return
        tcp_ports, udp_ports = standard[protocol]  # type: ignore[index]
        transport = event.get("network.transport")
        port = event.get("destination.port")
        if port is not None and port not in (tcp_ports if transport == "tcp" else udp_ports):
            odd_ports.add((protocol, transport, port))  # type: ignore[arg-type]
        per_field = found[protocol].setdefault(frame, {})  # type: ignore[index]
        role = event.get("ics.role")
        for key, name, only_role, when in keys:
            if only_role and role != only_role or when is not None and not when(event):
                continue
            value = event.get(name)
            if value is None:
                continue
            values = per_field.setdefault(key, [])
            if isinstance(value, list | tuple):
                values.extend(normalise(v) for v in value)
            else:
                values.append(normalise(value))

    sensor = Sensor(SensorSettings(sensor_id="differential"), sink=sink, dissectors=dissectors)
    with open_capture(capture) as source:
        try:
            sensor.run(source)
        except CaptureError:
            pass  # a truncated capture: compare what was readable, as tshark does
    sensor.finish()
    return found, odd_ports


def _theirs(capture: Path, dissectors: Sequence[Dissector], decode_as: Iterable[str],
            tshark: str) -> dict[str, FrameValues]:
    """Per protocol, per frame, per icsmon key field: tshark's values of the mapped field."""
    mapped = [(d.name, ours, theirs) for d in dissectors if d.wireshark for ours, theirs in d.wireshark.fields.items()]
    columns = sorted({theirs for _, _, theirs in mapped})
    display = " || ".join(f"({d.wireshark.display_filter})" for d in dissectors if d.wireshark)
    cmd = [tshark, "-r", str(capture), "-n", "-Y", display, "-T", "fields", "-E", "occurrence=a",
           "-E", f"aggregator={_AGGREGATOR}", "-E", "separator=/t", "-e", "frame.number"]
    for spec in decode_as:
        cmd += ["-d", spec]
    for column in columns:
        cmd += ["-e", column]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=600)
    except FileNotFoundError as exc:
        raise DifferentialError(f"{tshark}: not found; install Wireshark's tshark") from exc
    if result.returncode and not result.stdout and not _damaged_capture(result.stderr):
        message = " ".join(result.stderr.split())
        raise DifferentialError(f"tshark on {capture}: {message[:300]}")
    index = {name: i + 1 for i, name in enumerate(columns)}
    found: dict[str, FrameValues] = {d.name: {} for d in dissectors if d.wireshark}
    for line in result.stdout.splitlines():
        cells = line.split("\t")
        if not cells[0].isdigit():
            continue
        frame = int(cells[0])
        for protocol, ours, theirs in mapped:
            i = index[theirs]
            cell = cells[i] if i < len(cells) else ""
            if cell:
                values = [normalise(v) for v in cell.split(_AGGREGATOR) if v != ""]
                if values:
                    found[protocol].setdefault(frame, {})[ours] = values
    return found


def _damaged_capture(stderr: str) -> bool:
    """tshark failed only because the file is cut short or corrupt: what it read is still its answer."""
    return "cut short" in stderr or "damaged or corrupt" in stderr


def _sort_key(value: Value) -> tuple[int, Any]:
    return (0, value) if isinstance(value, int | float) else (1, value)


def compare_captures(captures: Sequence[Path], protocols: Sequence[str] | None = None, *,
                     known: Sequence[KnownDifference] = (), root: Path | None = None,
                     tshark: str = "tshark", dissectors: Sequence[Dissector] | None = None) -> Report:
    """Compare icsmon with tshark on every capture; ``root`` shortens capture names in the report.

    ``protocols`` picks registered dissectors by name (default: every one with a Wireshark
    mapping); ``dissectors`` replaces the registry altogether.
    """
    available = {d.name: d for d in dissectors} if dissectors is not None else registry()
    names = list(protocols) if protocols else [n for n, d in available.items() if d.wireshark]
    unknown = [n for n in names if n not in available or not available[n].wireshark]
    if unknown:
        raise DifferentialError(f"no Wireshark mapping for protocol {unknown[0]!r}; known: "
                                + ", ".join(n for n, d in available.items() if d.wireshark))
    if not names:
        raise DifferentialError("no protocol has a Wireshark mapping to compare")
    dissectors = [available[n] for n in names]
    report = Report()
    for d in dissectors:
        assert d.wireshark is not None
        for ours, theirs in d.wireshark.fields.items():
            report.agreements[(d.name, ours)] = Agreement(d.name, ours, theirs)
    for capture in captures:
        label = str(capture.relative_to(root)) if root and capture.is_relative_to(root) else str(capture)
        report.captures.append(label)
        ours, odd_ports = _ours(capture, dissectors)
        decode_as = sorted(f"{transport}.port=={port},{available[p].wireshark.decode_as}"  # type: ignore[union-attr]
                           for p, transport, port in odd_ports if available[p].wireshark.decode_as)  # type: ignore[union-attr]
        theirs = _theirs(capture, dissectors, decode_as, tshark)
        for d in dissectors:
            assert d.wireshark is not None
            mine, other = ours[d.name], theirs[d.name]
            for frame in sorted(set(mine) | set(other)):
                a_fields, b_fields = mine.get(frame, {}), other.get(frame, {})
                for key, wireshark_field in d.wireshark.fields.items():
                    a = sorted(a_fields.get(key, ()), key=_sort_key)
                    b = sorted(b_fields.get(key, ()), key=_sort_key)
                    if not a and not b:
                        continue
                    agreement = report.agreements[(d.name, key)]
                    agreement.frames += 1
                    if a == b:
                        agreement.agreed += 1
                        continue
                    diff = Difference(label, d.name, frame, key, wireshark_field, tuple(a), tuple(b))
                    reason = next((k.reason for k in known if k.covers(diff)), "")
                    if reason:
                        agreement.known += 1
                        diff = Difference(label, d.name, frame, key, wireshark_field, tuple(a), tuple(b), reason)
                    report.differences.append(diff)
    return report
