"""IEC 60870-5-104 (TCP port 2404): one event per APDU (I, S and U frames).

Framing (APCI): every APDU starts with the start byte 0x68 and a length octet
(4..253, the bytes that follow), then a 4-octet control field. Its low bits
tell the format: I (information transfer, bit 0 = 0) carries send and receive
sequence numbers and an ASDU; S (supervisory, bits 01) acknowledges with a
receive sequence number; U (unnumbered, bits 11) is one of STARTDT, STOPDT and
TESTFR, activation or confirmation. The TCP client is the controlling station
(it sends commands), the server on port 2404 the controlled station (outstation).

ASDU (little-endian, the sizes IEC 60870-5-104 fixes): type id (1), variable
structure qualifier (SQ bit and number of objects, 1), cause of transmission
(cause, P/N and test bits, 1), originator address (1), common address (2),
then the information objects: a 3-octet information object address (IOA) and
the type's elements, the time tag last. With SQ=1 only the first object
carries an IOA and the others follow at consecutive addresses.

Everything that depends on the type id is data (:data:`_TYPES`): name, element
size, time tag, one small element parser, ``ics.operation``, the causes of
transmission the type may carry. Element parsers fill one object dict and
return an anomaly reason or ``None``; the loop checks sizes first, so no parser
reads past the APDU.

Three outcomes per APDU, nothing else: a normal event; an event with
``event.type: ["protocol", "error"]`` and the list ``iec104.anomaly`` (the APDU
parses but breaks the specification, including sequence-number and
STARTDT-state violations); or :class:`~sensor.dissect.ProtocolViolation` when
the flow does not frame as IEC 104 at all (no start byte where the first APDU
should be, framing lost for good).

Bytes between APDUs that do not start with 0x68 are skipped up to the next
start byte and reported on the next APDU (``iec104.junk_bytes``), as Wireshark
does; a run of more than :data:`MAX_JUNK` such bytes, or of
:data:`MAX_BAD_APDUS` APDUs too short to hold a control field, gives the flow
up. After a capture gap the direction resynchronises on an APDU that parses
cleanly and is followed by another start byte (or ends the delivered data).

Commands are paired with their confirmations per flow by (type id, common
address, first IOA) -- at most :data:`MAX_OUTSTANDING` for :data:`PAIR_TIMEOUT`
seconds -- for the response time.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

from sensor.dissect import Dissector, Event, ProtocolViolation, WiresharkFields
from sensor.framing import FramedSession
from sensor.schema import Field

__all__ = ["DISSECTOR", "Iec104Session", "probe", "MAX_OBJECTS", "MAX_OUTSTANDING", "PAIR_TIMEOUT",
           "MAX_JUNK", "MAX_BAD_APDUS", "MAX_BUFFER", "TYPE_NAMES", "COT_NAMES"]

START = 0x68
MAX_OBJECTS = 64
"""Information objects recorded per event (``iec104.objects``, ``iec104.ioa``...); the rest are counted."""
MAX_OUTSTANDING = 1000
"""Commands awaiting a confirmation per flow; beyond it the oldest is forgotten (counted)."""
PAIR_TIMEOUT = 60.0
"""Seconds after which an unconfirmed command no longer pairs with its confirmation."""
MAX_JUNK = 1024
"""Bytes without a start byte tolerated in a row between APDUs before the flow is given up."""
MAX_BAD_APDUS = 16
"""APDUs in a row too short for a control field (length < 4) before the flow is given up."""
MAX_BUFFER = 64 << 10
"""Bytes one direction may scan for an APDU after a capture gap before the flow is given up."""
MAX_LENGTH = 253
"""Largest APDU length octet the specification allows (longer ones are parsed and flagged)."""

# -- wire layouts (the ASDU is little-endian) -----------------------------------------------------

_U16 = struct.Struct("<H")
_I16 = struct.Struct("<h")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_F32 = struct.Struct("<f")

_ERROR_TYPE = ("protocol", "error")
_NO_CONTROL = "apdu-too-short"

ElementParser = Callable[[bytes, int, dict[str, Any]], "str | None"]


def _coded(defined: dict[int, str], private_from: int, size: int = 256) -> tuple[str, ...]:
    """Name per code: the defined ones, ``private-<n>`` from ``private_from`` on, ``reserved-<n>`` between."""
    return tuple(defined.get(n) or (f"private-{n}" if n >= private_from else f"reserved-{n}")
                 for n in range(size))


# -- causes of transmission -----------------------------------------------------------------------

_COTS: dict[int, str] = {
    1: "per_cyc", 2: "back", 3: "spont", 4: "init", 5: "req", 6: "act", 7: "actcon", 8: "deact",
    9: "deactcon", 10: "actterm", 11: "retrem", 12: "retloc", 13: "file", 20: "inrogen",
    **{20 + g: f"inro{g}" for g in range(1, 17)},
    37: "reqcogen", **{37 + g: f"reqco{g}" for g in range(1, 5)},
    44: "unknown_type_id", 45: "unknown_cot", 46: "unknown_common_address", 47: "unknown_ioa",
}
COT_NAMES: tuple[str, ...] = tuple(_COTS.get(c) or (f"private-{c}" if c >= 48 else f"unknown-{c}")
                                   for c in range(64))
"""Cause of transmission (6 bits) -> name: the standard's abbreviations in lower case."""
_RESERVED_COTS = frozenset(c for c in range(48) if c not in _COTS)
_NEGATIVE_MIRRORS = frozenset({44, 45, 46, 47})
_CONFIRMATIONS = frozenset({7, 9, 10}) | _NEGATIVE_MIRRORS

# Role by cause; None: by direction (client to server is a request).
_COT_ROLE: tuple[str | None, ...] = tuple(
    "request" if c in (6, 8) else
    "response" if c in _CONFIRMATIONS or 20 <= c <= 41 else
    "unsolicited" if c in (1, 2, 3, 4, 11, 12) else None
    for c in range(64)
)

# -- qualifiers and states ------------------------------------------------------------------------

_SP_STATES = ("off", "on")
_DP_STATES = ("intermediate", "off", "on", "indeterminate")
_DC_STATES = ("not_permitted", "off", "on", "not_permitted")
_RC_STATES = ("not_permitted", "lower", "higher", "not_permitted")

_QU = _coded({0: "no_definition", 1: "short_pulse", 2: "long_pulse", 3: "persistent"}, 16, 32)
_QL = _coded({0: "default"}, 64, 128)
_QOI = _coded({0: "unused", 20: "station", **{20 + g: f"group_{g}" for g in range(1, 17)}}, 64)
_RQT = _coded({0: "none", 1: "group_1", 2: "group_2", 3: "group_3", 4: "group_4", 5: "general"}, 32, 64)
_FRZ = ("read", "freeze", "freeze_and_reset", "reset")
_QCC = tuple(f"{_RQT[q & 0x3F]}/{_FRZ[q >> 6]}" for q in range(256))
_QRP = _coded({0: "unused", 1: "general_reset", 2: "reset_event_buffer"}, 128)
_KPA = _coded({0: "unused", 1: "threshold", 2: "smoothing", 3: "low_limit", 4: "high_limit"}, 32, 64)
_QPA = _coded({0: "unused", 1: "act_previous_parameters", 2: "act_object_parameter",
               3: "act_cyclic_transmission"}, 128)
_COI = _coded({0: "local_power_on", 1: "local_manual_reset", 2: "remote_reset"}, 32, 128)
_SCQ = _coded({0: "default", 1: "select_file", 2: "request_file", 3: "deactivate_file", 4: "delete_file",
               5: "select_section", 6: "request_section", 7: "deactivate_section"}, 11, 16)
_AFQ = _coded({0: "not_used", 1: "file_ack_positive", 2: "file_ack_negative", 3: "section_ack_positive",
               4: "section_ack_negative"}, 11, 16)
_LSQ = _coded({0: "not_used", 1: "file_transfer_without_deact", 2: "file_transfer_with_deact",
               3: "section_transfer_without_deact", 4: "section_transfer_with_deact"}, 128)
_FILE_ERRORS = _coded({0: "default", 1: "no_memory", 2: "checksum_failed", 3: "unexpected_service",
                       4: "unknown_file", 5: "unknown_section"}, 11, 16)
_SPE_BITS = ((0x01, "general"), (0x02, "l1"), (0x04, "l2"), (0x08, "l3"), (0x10, "earth"), (0x20, "reverse"))
_OCI_BITS = ((0x01, "general"), (0x02, "l1"), (0x04, "l2"), (0x08, "l3"))
_SPE = tuple([name for bit, name in _SPE_BITS if b & bit] for b in range(256))
_OCI = tuple([name for bit, name in _OCI_BITS if b & bit] for b in range(256))

# Quality descriptors: flag names per octet value, in one canonical order.
_QUALITY_ORDER = ("IV", "NT", "SB", "BL", "OV", "EI", "CA", "CY")
_QUALITY_RANK = {name: i for i, name in enumerate(_QUALITY_ORDER)}


def _quality_table(bits: tuple[tuple[int, str], ...]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(name for bit, name in bits if b & bit) for b in range(256))


_Q_SIQ = _quality_table(((0x80, "IV"), (0x40, "NT"), (0x20, "SB"), (0x10, "BL")))
_Q_QDS = _quality_table(((0x80, "IV"), (0x40, "NT"), (0x20, "SB"), (0x10, "BL"), (0x01, "OV")))
_Q_QDP = _quality_table(((0x80, "IV"), (0x40, "NT"), (0x20, "SB"), (0x10, "BL"), (0x08, "EI")))
_Q_BCR = _quality_table(((0x80, "IV"), (0x40, "CA"), (0x20, "CY")))

# -- time tags ------------------------------------------------------------------------------------

_DAYS = (0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31, 0, 0, 0)


def _cp56(buf: bytes, o: int, obj: dict[str, Any], key: str = "time") -> str | None:
    """CP56Time2a at ``o`` as ISO 8601 (years 00-99 are 2000-2099; no zone: the station's own clock).

    Returns an anomaly reason when a component is out of range; then no time is set, so the
    date field never receives an impossible date.
    """
    ms = buf[o] | buf[o + 1] << 8
    minute, hour, day, month, year = buf[o + 2], buf[o + 3], buf[o + 4] & 0x1F, buf[o + 5] & 0x0F, buf[o + 6] & 0x7F
    if minute & 0x80:
        obj[key + "_invalid"] = True
    if hour & 0x80:
        obj[key + "_summer"] = True
    minute &= 0x3F
    hour &= 0x1F
    if (ms >= 60000 or minute >= 60 or hour >= 24 or year > 99 or day == 0
            or day > _DAYS[month] + (month == 2 and year & 3 == 0)):
        return "invalid-time-tag"
    obj[key] = (f"{2000 + year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:"
                f"{ms // 1000:02d}.{ms % 1000:03d}")
    return None


def _cp24(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    """CP24Time2a: minute and second within an hour the tag does not carry, as ``MM:SS.mmm``."""
    ms = buf[o] | buf[o + 1] << 8
    minute = buf[o + 2]
    if minute & 0x80:
        obj["time_invalid"] = True
    minute &= 0x3F
    if ms >= 60000 or minute >= 60:
        return "invalid-time-tag"
    obj["time"] = f"{minute:02d}:{ms // 1000:02d}.{ms % 1000:03d}"
    return None


# -- element parsers ------------------------------------------------------------------------------
#
# Signature: parse(buf, o, obj) -> anomaly reason or None. ``o`` is the first octet after the IOA;
# the caller guarantees the whole element (time tag included) is present.


def _siq(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    b = buf[o]
    obj["value"] = b & 1
    obj["state"] = _SP_STATES[b & 1]
    if b & 0xF0:
        obj["quality"] = list(_Q_SIQ[b])
    return None


def _diq(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    b = buf[o]
    obj["value"] = b & 3
    obj["state"] = _DP_STATES[b & 3]
    if b & 0xF0:
        obj["quality"] = list(_Q_SIQ[b])
    return None


def _qds(buf: bytes, o: int, obj: dict[str, Any]) -> None:
    b = buf[o]
    if b & 0xF1:
        obj["quality"] = list(_Q_QDS[b])


def _vti(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    b = buf[o]
    obj["value"] = (b & 0x3F) - (b & 0x40)  # 7-bit two's complement
    if b & 0x80:
        obj["transient"] = True
    _qds(buf, o + 1, obj)
    return None


def _bsi_q(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["value"] = _U32.unpack_from(buf, o)[0]
    _qds(buf, o + 4, obj)
    return None


def _nva_q(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["value"] = _I16.unpack_from(buf, o)[0] / 32768.0
    _qds(buf, o + 2, obj)
    return None


def _sva_q(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["value"] = _I16.unpack_from(buf, o)[0]
    _qds(buf, o + 2, obj)
    return None


def _float(buf: bytes, o: int, obj: dict[str, Any]) -> None:
    value = _F32.unpack_from(buf, o)[0]
    obj["value"] = value if math.isfinite(value) else str(value)  # nan/inf are no JSON numbers


def _r32_q(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    _float(buf, o, obj)
    _qds(buf, o + 4, obj)
    return None


def _nva(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["value"] = _I16.unpack_from(buf, o)[0] / 32768.0
    return None


def _bcr(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["value"] = _I32.unpack_from(buf, o)[0]
    b = buf[o + 4]
    obj["sequence"] = b & 0x1F
    if b & 0xE0:
        obj["quality"] = list(_Q_BCR[b])
    return None


def _sep(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    b = buf[o]
    obj["value"] = b & 3
    obj["state"] = _DP_STATES[b & 3]
    if b & 0xF8:
        obj["quality"] = list(_Q_QDP[b])
    obj["elapsed_ms"] = _U16.unpack_from(buf, o + 1)[0]
    return None


def _qdp(b: int, obj: dict[str, Any]) -> None:
    if b & 0xF8:
        obj["quality"] = list(_Q_QDP[b])


def _spe(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    b = buf[o]
    obj["value"] = b
    obj["events"] = _SPE[b]
    _qdp(buf[o + 1], obj)
    obj["duration_ms"] = _U16.unpack_from(buf, o + 2)[0]
    return None


def _oci(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    b = buf[o]
    obj["value"] = b
    obj["commands"] = _OCI[b]
    _qdp(buf[o + 1], obj)
    obj["operating_ms"] = _U16.unpack_from(buf, o + 2)[0]
    return None


def _scd(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["value"], obj["changes"] = _U16.unpack_from(buf, o)[0], _U16.unpack_from(buf, o + 2)[0]
    _qds(buf, o + 4, obj)
    return None


def _sco(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    b = buf[o]
    obj["value"] = b & 1
    obj["state"] = _SP_STATES[b & 1]
    obj["select"] = b >= 0x80
    obj["qualifier"] = qu = (b >> 2) & 0x1F
    obj["qualifier_name"] = _QU[qu]
    return None


def _dco(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    b = buf[o]
    obj["value"] = b & 3
    obj["state"] = _DC_STATES[b & 3]
    obj["select"] = b >= 0x80
    obj["qualifier"] = qu = (b >> 2) & 0x1F
    obj["qualifier_name"] = _QU[qu]
    return "invalid-command-state" if b & 3 in (0, 3) else None


def _rco(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    b = buf[o]
    obj["value"] = b & 3
    obj["state"] = _RC_STATES[b & 3]
    obj["select"] = b >= 0x80
    obj["qualifier"] = qu = (b >> 2) & 0x1F
    obj["qualifier_name"] = _QU[qu]
    return "invalid-command-state" if b & 3 in (0, 3) else None


def _qos(b: int, obj: dict[str, Any]) -> None:
    obj["select"] = b >= 0x80
    obj["qualifier"] = ql = b & 0x7F
    obj["qualifier_name"] = _QL[ql]


def _setpoint_nva(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["value"] = _I16.unpack_from(buf, o)[0] / 32768.0
    _qos(buf[o + 2], obj)
    return None


def _setpoint_sva(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["value"] = _I16.unpack_from(buf, o)[0]
    _qos(buf[o + 2], obj)
    return None


def _setpoint_r32(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    _float(buf, o, obj)
    _qos(buf[o + 4], obj)
    return None


def _bsi(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["value"] = _U32.unpack_from(buf, o)[0]
    return None


def _coi(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    b = buf[o]
    obj["qualifier"] = b & 0x7F
    obj["qualifier_name"] = _COI[b & 0x7F]
    if b & 0x80:
        obj["local_parameters_changed"] = True
    return None


def _qualifier(names: tuple[str, ...]) -> ElementParser:
    def parse(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
        obj["qualifier"] = b = buf[o]
        obj["qualifier_name"] = names[b]
        return None
    return parse


def _nothing(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    return None


def _test_pattern(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["value"] = pattern = _U16.unpack_from(buf, o)[0]
    return None if pattern == 0x55AA else "invalid-test-pattern"


def _delay(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["value"] = obj["delay_ms"] = _U16.unpack_from(buf, o)[0]
    return None


def _test_counter(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["value"] = _U16.unpack_from(buf, o)[0]
    return None


def _qpm(b: int, obj: dict[str, Any]) -> None:
    obj["qualifier"] = b & 0x3F
    obj["qualifier_name"] = _KPA[b & 0x3F]
    if b & 0x40:
        obj["local_parameter_change"] = True
    if b & 0x80:
        obj["not_in_operation"] = True


def _param_nva(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["value"] = _I16.unpack_from(buf, o)[0] / 32768.0
    _qpm(buf[o + 2], obj)
    return None


def _param_sva(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["value"] = _I16.unpack_from(buf, o)[0]
    _qpm(buf[o + 2], obj)
    return None


def _param_r32(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    _float(buf, o, obj)
    _qpm(buf[o + 4], obj)
    return None


def _u24(buf: bytes, o: int) -> int:
    return buf[o] | buf[o + 1] << 8 | buf[o + 2] << 16


def _file_ready(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["file"] = _U16.unpack_from(buf, o)[0]
    obj["length"] = _u24(buf, o + 2)
    obj["qualifier"] = frq = buf[o + 5]
    obj["ready"] = frq < 0x80
    return None


def _section_ready(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["file"] = _U16.unpack_from(buf, o)[0]
    obj["section"] = buf[o + 2]
    obj["length"] = _u24(buf, o + 3)
    obj["qualifier"] = srq = buf[o + 6]
    obj["ready"] = srq < 0x80
    return None


def _call_file(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["file"] = _U16.unpack_from(buf, o)[0]
    obj["section"] = buf[o + 2]
    b = buf[o + 3]
    obj["qualifier"] = b & 0x0F
    obj["qualifier_name"] = _SCQ[b & 0x0F]
    if b >> 4:
        obj["error"] = _FILE_ERRORS[b >> 4]
    return None


def _last_section(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["file"] = _U16.unpack_from(buf, o)[0]
    obj["section"] = buf[o + 2]
    obj["qualifier"] = lsq = buf[o + 3]
    obj["qualifier_name"] = _LSQ[lsq]
    obj["checksum"] = buf[o + 4]
    return None


def _ack_file(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["file"] = _U16.unpack_from(buf, o)[0]
    obj["section"] = buf[o + 2]
    b = buf[o + 3]
    obj["qualifier"] = b & 0x0F
    obj["qualifier_name"] = _AFQ[b & 0x0F]
    if b >> 4:
        obj["error"] = _FILE_ERRORS[b >> 4]
    return None


def _segment(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["file"] = _U16.unpack_from(buf, o)[0]
    obj["section"] = buf[o + 2]
    obj["segment_length"] = buf[o + 3]
    return None


def _directory(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["file"] = _U16.unpack_from(buf, o)[0]
    obj["length"] = _u24(buf, o + 2)
    sof = buf[o + 5]
    obj["status"] = sof & 0x1F
    if sof & 0x20:
        obj["last_file"] = True
    if sof & 0x40:
        obj["subdirectory"] = True
    if sof & 0x80:
        obj["transfer_active"] = True
    return None


def _query_log(buf: bytes, o: int, obj: dict[str, Any]) -> str | None:
    obj["file"] = _U16.unpack_from(buf, o)[0]
    start = _cp56(buf, o + 2, obj, "start")
    stop = _cp56(buf, o + 9, obj, "stop")
    if "start" in obj:
        obj["time"] = obj["start"]
    return start or stop


# -- the type table -------------------------------------------------------------------------------

_PROCESS_COTS = frozenset({1, 2, 3, 5, 11, 12, *range(20, 37)})
_COUNTER_COTS = frozenset({3, 5, *range(37, 42)})
_PROTECTION_COTS = frozenset({3})
_INIT_COTS = frozenset({4})
_COMMAND_COTS = frozenset({6, 7, 8, 9, 10, *_NEGATIVE_MIRRORS})
_ACT_COTS = frozenset({6, 7, *_NEGATIVE_MIRRORS})
_READ_COTS = frozenset({5, *_NEGATIVE_MIRRORS})
_CLOCK_COTS = frozenset({3, 6, 7, *_NEGATIVE_MIRRORS})
_PARAM_COTS = frozenset({6, 7, *range(20, 37), *_NEGATIVE_MIRRORS})
_PARAM_ACT_COTS = frozenset({6, 7, 8, 9, *_NEGATIVE_MIRRORS})
_FILE_COTS = frozenset({3, 5, 13, *_NEGATIVE_MIRRORS})

MONITOR, CONTROL, FILE = 1, 2, 3


class _Type:
    """Everything the dissector knows about one type id."""

    __slots__ = ("code", "name", "function", "description", "size", "time", "parse", "operation",
                 "reverse", "to_server_operation", "to_client_operation", "cots", "kind", "known",
                 "not_in_104")

    def __init__(self, code: int, name: str, description: str, size: int | None, time: int,
                 parse: ElementParser, operation: str, cots: frozenset[int], kind: int,
                 reverse: tuple[str, str] | None = None, not_in_104: bool = False, known: bool = True) -> None:
        self.code = code
        self.name = name
        self.function = name.lower()
        self.description = description
        self.size = size  # element octets after the IOA, time tag included; None: variable (F_SG_NA_1)
        self.time = time  # 0, 3 (CP24Time2a) or 7 (CP56Time2a) octets at the end of the element
        self.parse = parse
        self.operation = operation
        # File transfer in the reverse direction (controlling station to outstation): the direction
        # (`to_server`/`to_client`) in which this type then travels, and the operation it has there.
        self.reverse = reverse
        self.to_server_operation = reverse[1] if reverse and reverse[0] == "to_server" else operation
        self.to_client_operation = reverse[1] if reverse and reverse[0] == "to_client" else operation
        self.cots = cots
        self.kind = kind  # MONITOR (process information, monitor direction), CONTROL, FILE, or 0
        self.known = known
        self.not_in_104 = not_in_104  # defined by IEC 60870-5-101 only (CP24Time2a, C_TS_NA_1, C_CD_NA_1)


_T = _Type
_PUBLIC = (
    _T(1, "M_SP_NA_1", "single-point information", 1, 0, _siq, "report", _PROCESS_COTS, MONITOR),
    _T(2, "M_SP_TA_1", "single-point information with CP24Time2a", 4, 3, _siq, "report", _PROCESS_COTS,
       MONITOR, not_in_104=True),
    _T(3, "M_DP_NA_1", "double-point information", 1, 0, _diq, "report", _PROCESS_COTS, MONITOR),
    _T(4, "M_DP_TA_1", "double-point information with CP24Time2a", 4, 3, _diq, "report", _PROCESS_COTS,
       MONITOR, not_in_104=True),
    _T(5, "M_ST_NA_1", "step position information", 2, 0, _vti, "report", _PROCESS_COTS, MONITOR),
    _T(6, "M_ST_TA_1", "step position information with CP24Time2a", 5, 3, _vti, "report", _PROCESS_COTS,
       MONITOR, not_in_104=True),
    _T(7, "M_BO_NA_1", "bitstring of 32 bits", 5, 0, _bsi_q, "report", _PROCESS_COTS, MONITOR),
    _T(8, "M_BO_TA_1", "bitstring of 32 bits with CP24Time2a", 8, 3, _bsi_q, "report", _PROCESS_COTS,
       MONITOR, not_in_104=True),
    _T(9, "M_ME_NA_1", "measured value, normalized", 3, 0, _nva_q, "report", _PROCESS_COTS, MONITOR),
    _T(10, "M_ME_TA_1", "measured value, normalized, with CP24Time2a", 6, 3, _nva_q, "report",
       _PROCESS_COTS, MONITOR, not_in_104=True),
    _T(11, "M_ME_NB_1", "measured value, scaled", 3, 0, _sva_q, "report", _PROCESS_COTS, MONITOR),
    _T(12, "M_ME_TB_1", "measured value, scaled, with CP24Time2a", 6, 3, _sva_q, "report", _PROCESS_COTS,
       MONITOR, not_in_104=True),
    _T(13, "M_ME_NC_1", "measured value, short floating point", 5, 0, _r32_q, "report", _PROCESS_COTS,
       MONITOR),
    _T(14, "M_ME_TC_1", "measured value, short floating point, with CP24Time2a", 8, 3, _r32_q, "report",
       _PROCESS_COTS, MONITOR, not_in_104=True),
    _T(15, "M_IT_NA_1", "integrated totals", 5, 0, _bcr, "report", _COUNTER_COTS, MONITOR),
    _T(16, "M_IT_TA_1", "integrated totals with CP24Time2a", 8, 3, _bcr, "report", _COUNTER_COTS, MONITOR,
       not_in_104=True),
    _T(17, "M_EP_TA_1", "event of protection equipment with CP24Time2a", 6, 3, _sep, "report",
       _PROTECTION_COTS, MONITOR, not_in_104=True),
    _T(18, "M_EP_TB_1", "packed start events of protection equipment with CP24Time2a", 7, 3, _spe,
       "report", _PROTECTION_COTS, MONITOR, not_in_104=True),
    _T(19, "M_EP_TC_1", "packed output circuit information of protection equipment with CP24Time2a", 7, 3,
       _oci, "report", _PROTECTION_COTS, MONITOR, not_in_104=True),
    _T(20, "M_PS_NA_1", "packed single-point information with status change detection", 5, 0, _scd,
       "report", _PROCESS_COTS, MONITOR),
    _T(21, "M_ME_ND_1", "measured value, normalized, without quality descriptor", 2, 0, _nva, "report",
       _PROCESS_COTS, MONITOR),
    _T(30, "M_SP_TB_1", "single-point information with CP56Time2a", 8, 7, _siq, "report", _PROCESS_COTS,
       MONITOR),
    _T(31, "M_DP_TB_1", "double-point information with CP56Time2a", 8, 7, _diq, "report", _PROCESS_COTS,
       MONITOR),
    _T(32, "M_ST_TB_1", "step position information with CP56Time2a", 9, 7, _vti, "report", _PROCESS_COTS,
       MONITOR),
    _T(33, "M_BO_TB_1", "bitstring of 32 bits with CP56Time2a", 12, 7, _bsi_q, "report", _PROCESS_COTS,
       MONITOR),
    _T(34, "M_ME_TD_1", "measured value, normalized, with CP56Time2a", 10, 7, _nva_q, "report",
       _PROCESS_COTS, MONITOR),
    _T(35, "M_ME_TE_1", "measured value, scaled, with CP56Time2a", 10, 7, _sva_q, "report", _PROCESS_COTS,
       MONITOR),
    _T(36, "M_ME_TF_1", "measured value, short floating point, with CP56Time2a", 12, 7, _r32_q, "report",
       _PROCESS_COTS, MONITOR),
    _T(37, "M_IT_TB_1", "integrated totals with CP56Time2a", 12, 7, _bcr, "report", _COUNTER_COTS, MONITOR),
    _T(38, "M_EP_TD_1", "event of protection equipment with CP56Time2a", 10, 7, _sep, "report",
       _PROTECTION_COTS, MONITOR),
    _T(39, "M_EP_TE_1", "packed start events of protection equipment with CP56Time2a", 11, 7, _spe,
       "report", _PROTECTION_COTS, MONITOR),
    _T(40, "M_EP_TF_1", "packed output circuit information of protection equipment with CP56Time2a", 11, 7,
       _oci, "report", _PROTECTION_COTS, MONITOR),
    _T(45, "C_SC_NA_1", "single command", 1, 0, _sco, "write", _COMMAND_COTS, CONTROL),
    _T(46, "C_DC_NA_1", "double command", 1, 0, _dco, "write", _COMMAND_COTS, CONTROL),
    _T(47, "C_RC_NA_1", "regulating step command", 1, 0, _rco, "write", _COMMAND_COTS, CONTROL),
    _T(48, "C_SE_NA_1", "set-point command, normalized value", 3, 0, _setpoint_nva, "write", _COMMAND_COTS,
       CONTROL),
    _T(49, "C_SE_NB_1", "set-point command, scaled value", 3, 0, _setpoint_sva, "write", _COMMAND_COTS,
       CONTROL),
    _T(50, "C_SE_NC_1", "set-point command, short floating point", 5, 0, _setpoint_r32, "write",
       _COMMAND_COTS, CONTROL),
    _T(51, "C_BO_NA_1", "bitstring of 32 bits command", 4, 0, _bsi, "write", _COMMAND_COTS, CONTROL),
    _T(58, "C_SC_TA_1", "single command with CP56Time2a", 8, 7, _sco, "write", _COMMAND_COTS, CONTROL),
    _T(59, "C_DC_TA_1", "double command with CP56Time2a", 8, 7, _dco, "write", _COMMAND_COTS, CONTROL),
    _T(60, "C_RC_TA_1", "regulating step command with CP56Time2a", 8, 7, _rco, "write", _COMMAND_COTS,
       CONTROL),
    _T(61, "C_SE_TA_1", "set-point command, normalized value, with CP56Time2a", 10, 7, _setpoint_nva,
       "write", _COMMAND_COTS, CONTROL),
    _T(62, "C_SE_TB_1", "set-point command, scaled value, with CP56Time2a", 10, 7, _setpoint_sva, "write",
       _COMMAND_COTS, CONTROL),
    _T(63, "C_SE_TC_1", "set-point command, short floating point, with CP56Time2a", 12, 7, _setpoint_r32,
       "write", _COMMAND_COTS, CONTROL),
    _T(64, "C_BO_TA_1", "bitstring of 32 bits command with CP56Time2a", 11, 7, _bsi, "write", _COMMAND_COTS,
       CONTROL),
    _T(70, "M_EI_NA_1", "end of initialization", 1, 0, _coi, "restart", _INIT_COTS, MONITOR),
    _T(100, "C_IC_NA_1", "interrogation command", 1, 0, _qualifier(_QOI), "read", _COMMAND_COTS, CONTROL),
    _T(101, "C_CI_NA_1", "counter interrogation command", 1, 0, _qualifier(_QCC), "read", _COMMAND_COTS,
       CONTROL),
    _T(102, "C_RD_NA_1", "read command", 0, 0, _nothing, "read", _READ_COTS, CONTROL),
    _T(103, "C_CS_NA_1", "clock synchronization command", 7, 7, _nothing, "time_sync", _CLOCK_COTS, CONTROL),
    _T(104, "C_TS_NA_1", "test command", 2, 0, _test_pattern, "diagnostic", _ACT_COTS, CONTROL,
       not_in_104=True),
    _T(105, "C_RP_NA_1", "reset process command", 1, 0, _qualifier(_QRP), "restart", _ACT_COTS, CONTROL),
    _T(106, "C_CD_NA_1", "delay acquisition command", 2, 0, _delay, "time_sync", _CLOCK_COTS, CONTROL,
       not_in_104=True),
    _T(107, "C_TS_TA_1", "test command with CP56Time2a", 9, 7, _test_counter, "diagnostic", _ACT_COTS,
       CONTROL),
    _T(110, "P_ME_NA_1", "parameter of measured value, normalized", 3, 0, _param_nva, "config_change",
       _PARAM_COTS, CONTROL),
    _T(111, "P_ME_NB_1", "parameter of measured value, scaled", 3, 0, _param_sva, "config_change",
       _PARAM_COTS, CONTROL),
    _T(112, "P_ME_NC_1", "parameter of measured value, short floating point", 5, 0, _param_r32,
       "config_change", _PARAM_COTS, CONTROL),
    _T(113, "P_AC_NA_1", "parameter activation", 1, 0, _qualifier(_QPA), "config_change", _PARAM_ACT_COTS,
       CONTROL),
    _T(120, "F_FR_NA_1", "file ready", 6, 0, _file_ready, "file_read", _FILE_COTS, FILE,
       ("to_server", "file_write")),
    _T(121, "F_SR_NA_1", "section ready", 7, 0, _section_ready, "file_read", _FILE_COTS, FILE,
       ("to_server", "file_write")),
    _T(122, "F_SC_NA_1", "call directory, select file, call file, call section", 4, 0, _call_file,
       "file_read", _FILE_COTS, FILE, ("to_client", "file_write")),
    _T(123, "F_LS_NA_1", "last section, last segment", 5, 0, _last_section, "file_read", _FILE_COTS, FILE,
       ("to_server", "file_write")),
    _T(124, "F_AF_NA_1", "ack file, ack section", 4, 0, _ack_file, "file_read", _FILE_COTS, FILE,
       ("to_client", "file_write")),
    _T(125, "F_SG_NA_1", "segment", None, 0, _segment, "file_read", _FILE_COTS, FILE,
       ("to_server", "file_write")),
    _T(126, "F_DR_TA_1", "directory", 13, 7, _directory, "file_read", _FILE_COTS, FILE),
    _T(127, "F_SC_NB_1", "query log, request archive file", 16, 0, _query_log, "file_read", _FILE_COTS,
       FILE),
)
_DELETE_FILE = 4  # F_SC_NA_1 select-and-call qualifier "delete file": ics.operation file_delete


def _unknown(code: int) -> _Type:
    name = f"private-{code}" if code >= 128 else f"unknown-{code}"
    return _Type(code, name, "", None, 0, _nothing, "other", frozenset(), 0, known=False)


_TYPES: tuple[_Type, ...] = tuple(next((t for t in _PUBLIC if t.code == c), None) or _unknown(c)
                                  for c in range(256))
"""Indexed by type id; reserved ids are ``unknown-<n>``, 128-255 ``private-<n>``."""
TYPE_NAMES: tuple[str, ...] = tuple(t.name for t in _TYPES)
_FIXED_SIZE = tuple(t.size if t.known and t.size is not None else -1 for t in _TYPES)

# -- U frames -------------------------------------------------------------------------------------

# First control octet -> (name, ics.operation, role, act bit of the pair)
_U_FUNCTIONS: dict[int, tuple[str, str, str, int]] = {
    0x07: ("startdt_act", "session", "request", 0x04),
    0x0B: ("startdt_con", "session", "response", 0x04),
    0x13: ("stopdt_act", "session", "request", 0x10),
    0x23: ("stopdt_con", "session", "response", 0x10),
    0x43: ("testfr_act", "diagnostic", "request", 0x40),
    0x83: ("testfr_con", "diagnostic", "response", 0x40),
}

# Data transfer state of the connection (STARTDT/STOPDT procedure).
_UNKNOWN, _STOPPED, _STARTING, _STARTED, _STOPPING = range(5)

# Flat copies of the first object's fields: object key -> event field.
_FLAT = {"state": "iec104.state", "select": "iec104.select", "qualifier": "iec104.qualifier",
         "qualifier_name": "iec104.qualifier_name", "time": "iec104.time", "file": "iec104.file",
         "section": "iec104.section"}


def _operations() -> dict[str, str]:
    """Function name -> ics.operation. A file transfer row ending in `/to_server` or `/to_client`
    gives the operation when the type travels in that direction, i.e. the controlling station
    writes a file to the outstation; `f_sc_na_1/delete_file` is the operation of a delete."""
    table: dict[str, str] = {}
    for code in sorted(_U_FUNCTIONS):
        name, operation, _, _ = _U_FUNCTIONS[code]
        table[name] = operation
    table["s_frame"] = "session"
    for t in _PUBLIC:
        table[t.function] = t.operation
        if t.reverse:
            table[f"{t.function}/{t.reverse[0]}"] = t.reverse[1]
    table["f_sc_na_1/delete_file"] = "file_delete"
    table["unknown-<n>"] = "other"
    table["private-<n>"] = "other"
    table["u_unknown-<n>"] = "other"
    table["invalid_apdu"] = "other"
    return table


OPERATIONS = _operations()

# -- plausibility (probe and resynchronisation) ---------------------------------------------------

_U_CODES = frozenset(_U_FUNCTIONS)
_DEFINED_COTS = frozenset(_COTS)


def _plausible(buf: bytes, i: int) -> bool:
    """A whole, clean-looking APDU starts at ``i`` (the caller checked that all its bytes are present)."""
    length = buf[i + 1]
    if length < 4 or length > MAX_LENGTH:
        return False
    c0 = buf[i + 2]
    if not c0 & 1:  # I frame: needs at least an ASDU header and one IOA
        if buf[i + 4] & 1 or length < 13:
            return False
        a = i + 6
        t = _TYPES[buf[a]]
        count = buf[a + 1] & 0x7F
        if not t.known or count == 0 or buf[a + 2] & 0x3F not in _DEFINED_COTS:
            return False
        size = _FIXED_SIZE[t.code]
        if size < 0:
            return True
        body = length - 10
        return body == (3 + count * size if buf[a + 1] & 0x80 else count * (3 + size))
    if c0 & 3 == 1:
        return length == 4 and c0 == 1 and buf[i + 3] == 0 and not buf[i + 4] & 1
    return length == 4 and c0 in _U_CODES and buf[i + 3] == 0 and buf[i + 4] == 0 and buf[i + 5] == 0


def _plausible_start(buf: bytes, i: int, n: int) -> bool:
    """The ``n - i`` bytes present of an incomplete APDU at ``i`` (length octet 4..253) could begin a
    clean one: the checks of :func:`_plausible` that the present bytes allow."""
    length = buf[i + 1]
    if i + 3 > n:
        return True
    c0 = buf[i + 2]
    if c0 & 1:  # S and U frames are 6 octets
        return length == 4 and (c0 == 1 if c0 & 3 == 1 else c0 in _U_CODES)
    if length < 13 or (i + 5 <= n and buf[i + 4] & 1):
        return False
    if i + 7 <= n and not _TYPES[buf[i + 6]].known:
        return False
    if i + 8 <= n:
        vsq = buf[i + 7]
        count = vsq & 0x7F
        size = _FIXED_SIZE[buf[i + 6]]
        if count == 0 or (size >= 0 and length - 10 != (3 + count * size if vsq & 0x80 else count * (3 + size))):
            return False
    return i + 9 > n or buf[i + 8] & 0x3F in _DEFINED_COTS


def probe(payload: bytes, to_server: bool) -> bool:
    """The first payload holds whole, clean APDUs (a last one may be cut by the segment end).

    Start byte, length range, a well-formed control field and, for I frames, a known type id, a
    defined cause of transmission and an ASDU length that fits the type: random binary data and
    other protocols rarely pass all of them.
    """
    n = len(payload)
    off = 0
    for _ in range(8):
        if n - off < 2:
            return off > 0 and (off == n or payload[off] == START)
        if payload[off] != START:
            return False
        length = payload[off + 1]
        end = off + 2 + length
        if end > n:
            return off > 0 and 4 <= length <= MAX_LENGTH and _plausible_start(payload, off, n)
        if not _plausible(payload, off):
            return False
        if end == n:
            return True
        off = end
    return True


# -- the per-flow session -------------------------------------------------------------------------


class Iec104Session(FramedSession):
    """Per-flow state: buffers, sequence numbers, data transfer state and pending commands."""

    __slots__ = ("_junk", "_bad", "_confirmed", "_next_tx", "_acked", "_state", "_u_pending", "_seen",
                 "_numbered", "_pending", "max_objects", "max_outstanding", "timeout")

    frame_name = "iec104 apdu"
    max_resync = MAX_BUFFER

    def __init__(self, max_objects: int = MAX_OBJECTS, max_outstanding: int = MAX_OUTSTANDING,
                 timeout: float = PAIR_TIMEOUT) -> None:
        super().__init__({"apdus": 0, "i_frames": 0, "s_frames": 0, "u_frames": 0, "anomalies": 0,
                         "objects": 0, "objects_truncated": 0, "junk_bytes": 0, "paired": 0,
                         "unpaired_responses": 0, "requests_dropped": 0, "requests_timed_out": 0,
                         "gaps": 0, "resync_skipped_bytes": 0})
        self._junk = [0, 0]  # bytes without a start byte since the last APDU
        self._bad = 0  # APDUs in a row without a control field
        self._confirmed = False  # one well-formed APDU seen: the flow is IEC 104
        # Sequence numbers per sender: next N(S) expected, last N(R) sent (None: not known yet).
        self._next_tx: list[int | None] = [None, None]
        self._acked: list[int | None] = [None, None]
        self._state = _UNKNOWN
        self._u_pending = [0, 0]  # per sender: act bits awaiting their confirmation
        self._seen = 0  # APDUs since the start or the last gap
        self._numbered = False  # I frames were exchanged, or may have been (a gap): not a fresh connection
        self._pending: dict[int, tuple[float, bool]] = {}  # (type, CA, IOA) -> (activation time, confirmed)
        self.max_objects = max_objects
        self.max_outstanding = max_outstanding
        self.timeout = timeout

    def _after_gap(self, d: int) -> None:
        """Forget what the sequence numbers and the transfer state should be."""
        self._junk[d] = 0
        self._next_tx = [None, None]
        self._acked = [None, None]
        self._state = _UNKNOWN
        self._u_pending = [0, 0]
        self._seen = 0
        self._numbered = True

    def finish(self, ts: float) -> list[Event]:
        """Every APDU was reported when it arrived; nothing is held back."""
        self._pending.clear()
        return []

    # -- framing ----------------------------------------------------------------------------------

    def _find_frame(self, data: bytes, d: int) -> bytes:
        """After a gap: drop bytes up to an APDU that parses cleanly and is followed by a start byte.

        An APDU that ends exactly where the delivered data ends is accepted too (segments usually
        end with an APDU); while a candidate is incomplete the decision waits for more bytes.
        """
        n = len(data)
        i = data.find(b"\x68")
        while 0 <= i:
            if i + 2 > n:
                return self._skip(data, d, i, found=False)
            end = i + 2 + data[i + 1]
            if 4 <= data[i + 1] <= MAX_LENGTH:
                if end > n:
                    if _plausible_start(data, i, n):
                        return self._skip(data, d, i, found=False)  # wait for the rest of it
                    i = data.find(b"\x68", i + 1)
                    continue
                if _plausible(data, i) and (end == n or (data[end] == START and (
                        end + 1 == n or 4 <= data[end + 1] <= MAX_LENGTH))):
                    return self._skip(data, d, i, found=True)
            i = data.find(b"\x68", i + 1)
        return self._skip(data, d, n, found=False)

    def _frames(self, data: bytes, d: int, to_server: bool, ts: float, events: list[Event]) -> int:
        """Turn every whole APDU of ``data`` into an event; return the bytes consumed."""
        n = len(data)
        off = 0
        stats = self.stats
        while off < n:
            if data[off] != START:
                off = self._junk_run(data, off, d)
                if off >= n:
                    break
            if n - off < 2:
                break
            length = data[off + 1]
            end = off + 2 + length
            if end > n:
                break
            if length < 4:
                ev = self._too_short(length, to_server, off, d)
            else:
                self._bad = 0
                self._confirmed = True
                c0 = data[off + 2]
                if not c0 & 1:
                    ev = self._i_frame(data, off, end, d, to_server, ts)
                elif c0 & 3 == 1:
                    ev = self._s_frame(data, off, d)
                else:
                    ev = self._u_frame(data, off, d, to_server)
            junk = self._junk[d]
            if junk:
                ev["iec104.junk_bytes"] = junk
                _flag(ev, "junk-before-apdu")
                self._junk[d] = 0
            if "iec104.anomaly" in ev:
                ev["event.type"] = _ERROR_TYPE
                stats["anomalies"] += 1
            self._seen += 1
            stats["apdus"] += 1
            events.append(ev)
            off = end
        return off

    def _junk_run(self, data: bytes, off: int, d: int) -> int:
        """Skip bytes up to the next start byte; before the first APDU the flow is not IEC 104."""
        if not self._confirmed:
            raise ProtocolViolation("no start byte 0x68", self._pos[d] + off)
        nxt = data.find(b"\x68", off)
        stop = len(data) if nxt < 0 else nxt
        self._junk[d] += stop - off
        self.stats["junk_bytes"] += stop - off
        if self._junk[d] > MAX_JUNK:
            raise ProtocolViolation(f"no start byte 0x68 within {MAX_JUNK} bytes", self._pos[d] + stop)
        return stop

    def _too_short(self, length: int, to_server: bool, off: int, d: int) -> Event:
        if not self._confirmed:
            raise ProtocolViolation("apdu length below 4", self._pos[d] + off + 1)
        self._bad += 1
        if self._bad > MAX_BAD_APDUS:
            raise ProtocolViolation(f"{MAX_BAD_APDUS} apdus in a row without a control field",
                                    self._pos[d] + off)
        return {"iec104.apdu_length": length, "event.action": "invalid_apdu", "ics.function": "invalid_apdu",
                "ics.operation": "other", "ics.role": "request" if to_server else "response",
                "iec104.anomaly": [_NO_CONTROL]}

    # -- S and U frames ---------------------------------------------------------------------------

    def _s_frame(self, data: bytes, off: int, d: int) -> Event:
        length = data[off + 1]
        rx = (data[off + 4] | data[off + 5] << 8) >> 1
        ev: Event = {"iec104.apdu_length": length, "iec104.apci_type": "S", "iec104.apci_type_code": 1,
                     "iec104.rx_seq": rx, "event.action": "s_frame", "ics.function": "s_frame",
                     "ics.operation": "session", "ics.role": "response", "ics.status": "ok",
                     "event.outcome": "success"}
        self.stats["s_frames"] += 1
        if length != 4:
            _flag(ev, "s-frame-length")
        if data[off + 2] != 1 or data[off + 3] or data[off + 4] & 1:
            _flag(ev, "s-frame-reserved-bits")
        self._check_rx(d, rx, ev)
        return ev

    def _u_frame(self, data: bytes, off: int, d: int, to_server: bool) -> Event:
        length = data[off + 1]
        c0 = data[off + 2]
        code = c0 >> 2
        ev: Event = {"iec104.apdu_length": length, "iec104.apci_type": "U", "iec104.apci_type_code": 3,
                     "iec104.u_function_code": code}
        self.stats["u_frames"] += 1
        function = _U_FUNCTIONS.get(c0)
        if function is None:
            name = f"u_unknown-{code}"
            ev["iec104.u_function"] = ev["event.action"] = ev["ics.function"] = name
            ev["ics.operation"] = "other"
            ev["ics.role"] = "request" if to_server else "response"
            _flag(ev, "invalid-u-function")
        else:
            name, operation, role, bit = function
            ev["iec104.u_function"] = ev["event.action"] = ev["ics.function"] = name
            ev["ics.operation"] = operation
            ev["ics.role"] = role
            if role == "request":
                if bit != 0x40 and not to_server:
                    _flag(ev, "u-act-wrong-direction")
                self._u_pending[d] |= bit
            else:
                ev["ics.status"] = "ok"
                ev["event.outcome"] = "success"
                if bit != 0x40 and to_server:
                    _flag(ev, "u-con-wrong-direction")
                if self._u_pending[1 - d] & bit:
                    self._u_pending[1 - d] &= ~bit
                elif self._seen:
                    _flag(ev, "unexpected-u-con")
            self._transfer_state(c0)
        if length != 4:
            _flag(ev, "u-frame-length")
        if data[off + 3] or data[off + 4] or data[off + 5]:
            _flag(ev, "u-frame-reserved-bits")
        return ev

    def _transfer_state(self, c0: int) -> None:
        """STARTDT/STOPDT procedure. The first APDU of a flow being STARTDT act means the flow was
        seen from its start: sequence numbers begin at 0 in both directions."""
        if c0 == 0x07:
            if self._seen == 0 and not self._numbered:
                self._next_tx = [0, 0]
                self._acked = [0, 0]
            if self._state != _STARTED:
                self._state = _STARTING
        elif c0 == 0x0B:
            self._state = _STARTED
        elif c0 == 0x13:
            self._state = _STOPPING
        elif c0 == 0x23:
            self._state = _STOPPED

    # -- sequence numbers -------------------------------------------------------------------------

    def _check_tx(self, d: int, tx: int, ev: Event) -> None:
        expected = self._next_tx[d]
        if expected is None or tx == expected:
            self._next_tx[d] = (tx + 1) & 0x7FFF
            return
        ev["iec104.expected_tx_seq"] = expected
        if (expected - tx) & 0x7FFF < (tx - expected) & 0x7FFF:
            _flag(ev, "tx-seq-duplicate")  # old number again: retransmission or replay; keep expecting
        else:
            _flag(ev, "tx-seq-gap")
            self._next_tx[d] = (tx + 1) & 0x7FFF

    def _check_rx(self, d: int, rx: int, ev: Event) -> None:
        """N(R) from ``d`` acknowledges the other side's I frames: between the last N(R) and what
        that side has sent."""
        acked = self._acked[d]
        sent = self._next_tx[1 - d]
        if acked is not None and sent is not None and (rx - acked) & 0x7FFF > (sent - acked) & 0x7FFF:
            # Either way the last plausible acknowledgement stays the reference.
            _flag(ev, "rx-seq-ahead" if (rx - sent) & 0x7FFF < (acked - rx) & 0x7FFF else "rx-seq-backwards")
            return
        self._acked[d] = rx

    # -- I frames ---------------------------------------------------------------------------------

    def _i_frame(self, data: bytes, off: int, end: int, d: int, to_server: bool, ts: float) -> Event:
        length = data[off + 1]
        tx = (data[off + 2] | data[off + 3] << 8) >> 1
        rx = (data[off + 4] | data[off + 5] << 8) >> 1
        a = off + 6
        self.stats["i_frames"] += 1
        if end - a >= 6:  # the usual case: a whole ASDU header, one dict literal
            t = _TYPES[data[a]]
            vsq, c = data[a + 1], data[a + 2]
            cause = c & 0x3F
            ca = data[a + 4] | data[a + 5] << 8
            ev: Event = {
                "iec104.apdu_length": length, "iec104.apci_type": "I", "iec104.apci_type_code": 0,
                "iec104.tx_seq": tx, "iec104.rx_seq": rx, "iec104.type_id": t.code, "iec104.type": t.name,
                "event.action": t.function, "ics.function": t.function, "iec104.sq": vsq >= 0x80,
                "iec104.object_count": vsq & 0x7F, "iec104.cot": cause, "iec104.cot_name": COT_NAMES[cause],
                "iec104.negative": c & 0x40 == 0x40, "iec104.test": c >= 0x80,
                "ics.role": _COT_ROLE[cause] or ("request" if to_server else "response"),
                "iec104.originator": data[a + 3], "iec104.common_address": ca, "ics.unit": str(ca)}
        else:
            ev = {"iec104.apdu_length": length, "iec104.apci_type": "I", "iec104.apci_type_code": 0,
                  "iec104.tx_seq": tx, "iec104.rx_seq": rx}
        if length > MAX_LENGTH:
            _flag(ev, "apdu-too-long")
        if data[off + 4] & 1:
            _flag(ev, "i-frame-reserved-bit")
        state = self._state
        if state == _UNKNOWN and not self._numbered and tx == 0 and rx == 0:
            state = self._state = _STOPPED  # the flow's first I frame, numbered (0, 0): a new connection
            self._next_tx = [0, 0]
            self._acked = [0, 0]
        if state == _STOPPED or state == _STARTING:
            _flag(ev, "i-frame-before-startdt-con")
        elif state == _STOPPING and to_server:
            _flag(ev, "i-frame-after-stopdt-act")
        self._numbered = True
        self._check_tx(d, tx, ev)
        self._check_rx(d, rx, ev)
        if end - a >= 6:
            self._asdu(t, data, a, end, ev, to_server, ts)
        else:
            self._short_asdu(data, a, end, ev, to_server)
        return ev

    def _asdu(self, t: _Type, buf: bytes, a: int, end: int, ev: Event, to_server: bool, ts: float) -> None:
        """A whole ASDU header is in ``ev`` already: check it, decode the objects, pair."""
        if not t.known and t.code < 128:
            _flag(ev, "reserved-type-id")
        elif t.not_in_104:
            _flag(ev, "type-not-used-in-104")
        c = buf[a + 2]
        cause = c & 0x3F
        negative = c & 0x40 == 0x40
        self._cot_checks(t, cause, negative, to_server, ev)
        first_ioa = self._objects(t, buf, a + 6, end, buf[a + 1] & 0x7F, buf[a + 1] >= 0x80, ev) if t.known else -1
        if to_server:
            operation = t.to_server_operation
        else:
            operation = t.to_client_operation
        if t.code == 122 and ev.get("iec104.qualifier") == _DELETE_FILE:
            operation = "file_delete"
        ev["ics.operation"] = operation
        role = ev["ics.role"]
        if role == "response":
            _status(ev, cause, negative)
        if t.kind == CONTROL:
            ca = buf[a + 4] | buf[a + 5] << 8
            self._pair(t.code << 40 | ca << 24 | max(first_ioa, 0), cause, negative, role, to_server, ts, ev)

    def _short_asdu(self, buf: bytes, a: int, end: int, ev: Event, to_server: bool) -> None:
        """An ASDU shorter than its 6-octet header: report the fields present, as Wireshark does."""
        size = end - a
        ev["ics.role"] = "request" if to_server else "response"
        if size <= 0:
            ev["event.action"] = ev["ics.function"] = "invalid_apdu"
            ev["ics.operation"] = "other"
            _flag(ev, "i-frame-without-asdu")
            return
        t = _TYPES[buf[a]]
        ev["iec104.type_id"] = t.code
        ev["iec104.type"] = t.name
        ev["event.action"] = ev["ics.function"] = t.function
        ev["ics.operation"] = t.to_server_operation if to_server else t.to_client_operation
        if not t.known and t.code < 128:
            _flag(ev, "reserved-type-id")
        elif t.not_in_104:
            _flag(ev, "type-not-used-in-104")
        if size >= 2:
            ev["iec104.sq"] = buf[a + 1] >= 0x80
            ev["iec104.object_count"] = buf[a + 1] & 0x7F
        if size >= 3:
            c = buf[a + 2]
            cause = c & 0x3F
            negative = c & 0x40 == 0x40
            ev["iec104.cot"] = cause
            ev["iec104.cot_name"] = COT_NAMES[cause]
            ev["iec104.negative"] = negative
            ev["iec104.test"] = c >= 0x80
            role = _COT_ROLE[cause] or ev["ics.role"]
            ev["ics.role"] = role
            self._cot_checks(t, cause, negative, to_server, ev)
            if role == "response":
                _status(ev, cause, negative)
        if size >= 4:
            ev["iec104.originator"] = buf[a + 3]
        _flag(ev, "asdu-too-short")

    def _cot_checks(self, t: _Type, cause: int, negative: bool, to_server: bool, ev: Event) -> None:
        if cause in _RESERVED_COTS:
            _flag(ev, "reserved-cot")
        elif t.known and cause < 48 and cause not in t.cots:
            _flag(ev, "cot-not-allowed")
        if negative and cause not in _CONFIRMATIONS:
            _flag(ev, "negative-not-confirmation")
        if to_server:
            if t.kind == MONITOR or (t.kind == CONTROL and cause in _CONFIRMATIONS):
                _flag(ev, "wrong-direction")
        elif t.kind == CONTROL and (cause == 6 or cause == 8):
            _flag(ev, "wrong-direction")

    def _objects(self, t: _Type, buf: bytes, body: int, end: int, count: int, sq: bool, ev: Event) -> int:
        """Parse up to ``max_objects`` information objects; fill the flat fields; return the first IOA."""
        avail = end - body
        size = t.size
        if size is None:  # F_SG_NA_1: the segment length says how long the element is
            present, needed = self._variable_objects(buf, body, end, count, sq)
        elif sq:
            needed = 3 + count * size
            present = count if needed == avail or (size == 0 and avail >= 3) else (
                0 if avail < 3 else min(count, (avail - 3) // size))
        else:
            needed = count * (3 + size)
            present = count if needed == avail else min(count, avail // (3 + size))
        if needed != avail or count == 0:
            _flag(ev, "no-objects" if count == 0 else "asdu-length-mismatch")
        stats = self.stats
        stats["objects"] += present
        recorded = present
        if present > self.max_objects:
            recorded = self.max_objects
            ev["iec104.objects_omitted"] = present - recorded
            stats["objects_truncated"] += present - recorded
        if recorded == 0:
            return -1
        parse, tsize = t.parse, t.time
        o = body
        ioa = buf[o] | buf[o + 1] << 8 | buf[o + 2] << 16
        o += 3
        reasons: list[str] = []
        if recorded == 1:  # the usual spontaneous report or command: no loop, no accumulation
            first: dict[str, Any] = {"ioa": ioa}
            reason = parse(buf, o, first)
            if reason:
                reasons.append(reason)
            if tsize:
                esize = size if size is not None else 4 + buf[o + 3]
                reason = (_cp56 if tsize == 7 else _cp24)(buf, o + esize - tsize, first)
                if reason:
                    reasons.append(reason)
            ioas = [ioa]
            ev["iec104.ioa"] = ioas
            ev["iec104.objects"] = [first]
            if "value" in first and first["value"].__class__ is not str:
                ev["ics.values"] = [first["value"]]
            if "quality" in first:
                ev["iec104.quality"] = list(first["quality"])
        else:
            first = self._many(parse, tsize, size, buf, o, ioa, recorded, sq, ev, reasons)
            ioas = ev["iec104.ioa"]
        for key in first:
            flat = _FLAT.get(key)
            if flat is not None and (tsize != 3 or key != "time"):  # CP24Time2a is no date: objects only
                ev[flat] = first[key]
        if ioa:
            ev["ics.address_start"] = ioa
            ev["ics.address_count"] = count
            ev["ics.tag"] = [f"ioa:{i}" for i in ioas]
        if reasons:
            for reason in sorted(set(reasons)):
                _flag(ev, reason)
        return ioa

    @staticmethod
    def _many(parse: ElementParser, tsize: int, size: int | None, buf: bytes, o: int, ioa: int, recorded: int,
              sq: bool, ev: Event, reasons: list[str]) -> dict[str, Any]:
        """Several objects (``o`` is past the first IOA): lists of objects, IOAs and values, quality union."""
        objects: list[dict[str, Any]] = []
        ioas: list[int] = []
        values: list[Any] = []
        quality: set[str] | None = None
        for k in range(recorded):
            if k:
                if sq:
                    ioa = (ioa + 1) & 0xFFFFFF
                else:
                    ioa = buf[o] | buf[o + 1] << 8 | buf[o + 2] << 16
                    o += 3
            obj: dict[str, Any] = {"ioa": ioa}
            reason = parse(buf, o, obj)
            if reason:
                reasons.append(reason)
            esize = size if size is not None else 4 + buf[o + 3]
            if tsize:
                reason = (_cp56 if tsize == 7 else _cp24)(buf, o + esize - tsize, obj)
                if reason:
                    reasons.append(reason)
            o += esize
            if "value" in obj:
                value = obj["value"]
                if value.__class__ is not str:
                    values.append(value)
            if "quality" in obj:
                if quality is None:
                    quality = set(obj["quality"])
                else:
                    quality.update(obj["quality"])
            ioas.append(ioa)
            objects.append(obj)
        ev["iec104.ioa"] = ioas
        ev["iec104.objects"] = objects
        if values:
            ev["ics.values"] = values
        if quality:
            ev["iec104.quality"] = sorted(quality, key=_QUALITY_RANK.__getitem__)
        return objects[0]

    @staticmethod
    def _variable_objects(buf: bytes, body: int, end: int, count: int, sq: bool) -> tuple[int, int]:
        """Whole F_SG_NA_1 objects present, and the ASDU body length they call for (more than
        present when one is cut: the segment length octet says how long each element is)."""
        o = body
        if sq:  # one IOA, then the elements
            if end - o < 3:
                return 0, end - body + 1
            o += 3
        present = 0
        for _ in range(count):
            header = o if sq else o + 3
            if header + 4 > end:
                return present, end - body + 1
            nxt = header + 4 + buf[header + 3]
            if nxt > end:
                return present, end - body + 1
            o = nxt
            present += 1
        return present, o - body

    # -- pairing ----------------------------------------------------------------------------------

    def _pair(self, key: int, cause: int, negative: bool, role: str, to_server: bool, ts: float,
              ev: Event) -> None:
        """Activations wait for their confirmation by type, common address and IOA.

        A positive actcon keeps the entry (marked confirmed) for an actterm that may follow; actterm,
        deactcon and negative confirmations end the procedure. A confirmed entry that expires is not
        counted as timed out: many stations never send actterm for single commands.
        """
        pending = self._pending
        if role == "request" and to_server and (cause == 6 or cause == 8):
            if key in pending:
                del pending[key]  # a repeated activation: the newer one wins, and moves to the end
            elif pending:
                oldest = next(iter(pending))
                sent, confirmed = pending[oldest]
                if ts - sent > self.timeout:
                    del pending[oldest]  # expire lazily, one per activation
                    if not confirmed:
                        self.stats["requests_timed_out"] += 1
                elif len(pending) >= self.max_outstanding:
                    del pending[oldest]
                    self.stats["requests_dropped"] += 1
            pending[key] = (ts, False)
            return
        if role != "response" or to_server:
            return
        entry = pending.get(key)
        if entry is None:
            self.stats["unpaired_responses"] += 1
            return
        sent, confirmed = entry
        if ts - sent > self.timeout:
            del pending[key]
            if not confirmed:
                self.stats["requests_timed_out"] += 1
            self.stats["unpaired_responses"] += 1
            return
        if cause == 7 and not negative:
            pending[key] = (sent, True)
        else:
            del pending[key]
        self.stats["paired"] += 1
        ev["iec104.request_time_ms"] = int(sent * 1000.0)
        ev["iec104.response_time_ms"] = round((ts - sent) * 1000.0, 3)


def _flag(ev: Event, reason: str) -> None:
    anomalies = ev.get("iec104.anomaly")
    if anomalies is None:
        ev["iec104.anomaly"] = [reason]
    elif reason not in anomalies:
        anomalies.append(reason)


def _status(ev: Event, cause: int, negative: bool) -> None:
    if cause in _NEGATIVE_MIRRORS:
        ev["ics.status"] = COT_NAMES[cause]
        ev["event.outcome"] = "failure"
    elif negative:
        ev["ics.status"] = "negative"
        ev["event.outcome"] = "failure"
    else:
        ev["ics.status"] = "ok"
        ev["event.outcome"] = "success"


# -- registration ---------------------------------------------------------------------------------


def _fields() -> tuple[Field, ...]:
    F = Field
    return (
        F("iec104.apdu_length", "short", "APDU length octet: bytes after it (control field and ASDU), 4..253."),
        F("iec104.apci_type", "keyword", "APDU format: `I` (information), `S` (supervisory) or `U`"
          " (unnumbered control)."),
        F("iec104.apci_type_code", "byte", "APDU format as a number, as Wireshark shows it: 0 I, 1 S, 3 U."),
        F("iec104.tx_seq", "integer", "I frames: send sequence number N(S), 0..32767."),
        F("iec104.rx_seq", "integer", "I and S frames: receive sequence number N(R), the next N(S) the"
          " sender expects (it acknowledges everything before)."),
        F("iec104.expected_tx_seq", "integer", "With a tx-seq-gap or tx-seq-duplicate anomaly: the N(S)"
          " the sender should have used."),
        F("iec104.u_function_code", "short", "U frames: first control octet shifted right by 2 (1 STARTDT"
          " act, 2 STARTDT con, 4 STOPDT act, 8 STOPDT con, 16 TESTFR act, 32 TESTFR con)."),
        F("iec104.u_function", "keyword", "U frames: `startdt_act`, `startdt_con`, `stopdt_act`,"
          " `stopdt_con`, `testfr_act`, `testfr_con`, or `u_unknown-<code>`."),
        F("iec104.type_id", "short", "ASDU type identification, 1..127 standard, 128..255 private."),
        F("iec104.type", "keyword", "Type name as in the standard, e.g. `C_SC_NA_1`; `unknown-<n>` for"
          " reserved ids, `private-<n>` for 128..255."),
        F("iec104.sq", "boolean", "Variable structure qualifier SQ bit: the objects are one sequence of"
          " elements at consecutive IOAs after a single IOA."),
        F("iec104.object_count", "short", "Number of information objects (or elements) the variable"
          " structure qualifier declares, 0..127."),
        F("iec104.cot", "short", "Cause of transmission, 6 bits (3 spontaneous, 6 activation, 7"
          " activation confirmation, 20 interrogated by station...)."),
        F("iec104.cot_name", "keyword", "Cause of transmission name: per_cyc, back, spont, init, req, act,"
          " actcon, deact, deactcon, actterm, retrem, retloc, file, inrogen, inro1..16, reqcogen,"
          " reqco1..4, unknown_type_id, unknown_cot, unknown_common_address, unknown_ioa,"
          " `private-<n>` (48..63) or `unknown-<n>` (reserved)."),
        F("iec104.negative", "boolean", "P/N bit: negative confirmation."),
        F("iec104.test", "boolean", "T bit: the ASDU is a test, not to be acted on."),
        F("iec104.originator", "short", "Originator address (which controlling station asked, 0 by default)."),
        F("iec104.common_address", "integer", "Common address of ASDU (station or sector address);"
          " also `ics.unit` as text."),
        F("iec104.ioa", "long", "Information object addresses of the recorded objects (with SQ, the"
          " consecutive addresses); at most 64.", array=True),
        F("iec104.objects", "object", "Recorded information objects, at most 64: `ioa`, and as the type"
          " carries them `value`, `state`, `quality`, `time` (ISO 8601 for CP56Time2a, `MM:SS.mmm` for"
          " CP24Time2a), `time_invalid`, `time_summer`, `select`, `qualifier`, `qualifier_name`,"
          " `transient`, `sequence`, `elapsed_ms`, `duration_ms`, `operating_ms`, `events`, `commands`,"
          " `changes`, `delay_ms`, `local_parameters_changed`, `local_parameter_change`,"
          " `not_in_operation`, `file`, `section`, `length`, `ready`, `error`, `checksum`,"
          " `segment_length`, `status`, `last_file`, `subdirectory`, `transfer_active`, `start`, `stop`"
          " (see sensor/protocols/iec104.md).", array=True),
        F("iec104.objects_omitted", "short", "Objects present in the ASDU beyond the 64 recorded."),
        F("iec104.quality", "keyword", "Quality flags set on any recorded object: IV invalid, NT not"
          " topical, SB substituted, BL blocked, OV overflow, EI elapsed time invalid, CA counter"
          " adjusted, CY counter carry.", array=True),
        F("iec104.state", "keyword", "First object: single/double point or command state (`off`, `on`,"
          " `intermediate`, `indeterminate`, `lower`, `higher`, `not_permitted`)."),
        F("iec104.select", "boolean", "First object of a command with an S/E bit: true for select, false"
          " for execute."),
        F("iec104.qualifier", "short", "First object's qualifier: QU of a command, QL of a set-point, QOI,"
          " QCC, QRP, KPA of QPM, QPA, COI cause, or the file qualifier (SCQ, AFQ, LSQ, FRQ, SRQ)."),
        F("iec104.qualifier_name", "keyword", "Name of `iec104.qualifier`, e.g. `short_pulse`, `station`,"
          " `general/read`, `general_reset`, `remote_reset`, `delete_file`."),
        F("iec104.time", "date", "First object's CP56Time2a time tag as sent (the station's clock, UTC or"
          " local time by configuration, years 2000-2099); absent when out of range."),
        F("iec104.file", "integer", "File transfer: name of file (NOF) of the first object."),
        F("iec104.section", "short", "File transfer: name of section (NOS) of the first object."),
        F("iec104.junk_bytes", "integer", "Bytes not starting an APDU that were skipped before this one."),
        F("iec104.request_time_ms", "date", "Confirmations: capture time of the paired activation (epoch"
          " milliseconds)."),
        F("iec104.response_time_ms", "double", "Confirmations: milliseconds since the paired activation."),
        F("iec104.anomaly", "keyword", "Why the APDU breaks the specification although it parses (every"
          " reason found): framing (junk-before-apdu, apdu-too-short, apdu-too-long, i-frame-without-asdu,"
          " i-frame-reserved-bit, s-frame-length, s-frame-reserved-bits, u-frame-length,"
          " u-frame-reserved-bits, invalid-u-function), sequence and state (tx-seq-gap, tx-seq-duplicate,"
          " rx-seq-ahead, rx-seq-backwards, i-frame-before-startdt-con, i-frame-after-stopdt-act,"
          " unexpected-u-con, u-act-wrong-direction, u-con-wrong-direction) and ASDU (asdu-too-short,"
          " reserved-type-id, type-not-used-in-104, no-objects, asdu-length-mismatch, reserved-cot,"
          " cot-not-allowed, negative-not-confirmation, wrong-direction, invalid-time-tag,"
          " invalid-command-state, invalid-test-pattern).", array=True),
    )


DISSECTOR = Dissector(
    name="iec104",
    description="IEC 60870-5-104. I frames are named after their ASDU type (lower case); U frames after"
    " their function; S frames are `s_frame`. File transfer types have one operation when the outstation"
    " sends them (the row without suffix) and another when the controlling station does (`/to_server`).",
    tcp_ports=frozenset({2404}),
    udp_ports=frozenset(),
    probe=probe,
    new_session=Iec104Session,
    fields=_fields(),
    operations=OPERATIONS,
    routine_actions=frozenset({"s_frame", "testfr_act", "testfr_con"}),
    wireshark=WiresharkFields(
        display_filter="iec60870_104",
        fields={
            "iec104.apdu_length": "iec60870_104.apdulen",
            "iec104.apci_type_code": "iec60870_104.type",
            "iec104.u_function_code": "iec60870_104.utype",
            "iec104.tx_seq": "iec60870_104.tx",
            "iec104.rx_seq": "iec60870_104.rx",
            "iec104.type_id": "iec60870_asdu.typeid",
            "iec104.sq": "iec60870_asdu.sq",
            "iec104.object_count": "iec60870_asdu.numix",
            "iec104.cot": "iec60870_asdu.causetx",
            "iec104.negative": "iec60870_asdu.nega",
            "iec104.test": "iec60870_asdu.test",
            "iec104.originator": "iec60870_asdu.oa",
            "iec104.common_address": "iec60870_asdu.addr",
            "iec104.ioa": "iec60870_asdu.ioa",
        },
        decode_as="iec60870_104",
    ),
)
