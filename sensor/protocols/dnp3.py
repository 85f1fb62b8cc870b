"""DNP3 (IEEE 1815) over TCP and UDP, port 20000: one event per application fragment or link frame.

Three layers, each checked:

* **Link layer.** A frame starts with the octets 0x05 0x64, then LENGTH (control, destination
  and source plus the user data: 5..255), CONTROL (DIR, PRM, FCB/FCV or DFC, function code),
  DESTINATION and SOURCE (16 bits, little-endian) and a CRC over these 8 octets; the user data
  follows in blocks of 16 octets (the last one shorter), each with its own CRC (CRC-16/DNP).
  Every CRC is checked. A bad header CRC makes the frame untrustworthy: where a frame should
  start it becomes a link event with the anomaly ``header-crc-error``, and the octets after its
  header are junk up to the next good header (its length cannot be trusted). A bad data
  block CRC is counted (``dnp3.link.crc_errors``) and reported as the anomaly ``crc-error`` on
  the event the data ends up in; the data is still decoded, so a monitor sees what was sent
  even where an outstation would discard it.
* **Transport layer.** User data frames (primary functions 3 and 4) carry one octet of
  transport header (FIN, FIR, 6-bit sequence) and a segment of an application fragment.
  Segments are put back together per direction and link address pair, in sequence, up to
  :data:`MAX_FRAGMENT` octets, at most :data:`MAX_ASSEMBLIES` at a time; a sequence gap, a
  segment without its first one or an overlong fragment is an anomaly, and the following
  segments are dropped quietly until the next first segment.
* **Application layer.** Application control (FIR, FIN, CON, UNS, sequence), function code,
  internal indications (responses) and object headers (group, variation, qualifier with its
  prefix and range codes, range or count) with the point indexes and values of the common
  groups; everything that depends on a function code or an object is data (:data:`_FUNCTIONS`,
  :data:`_OBJECTS`).

Events: one per application fragment, at the frame that completes it, and one per link frame
that carries no application data (link resets, link status, ACK/NACK) or whose segment could
not be used (``link_<function>``). Frames that only add a segment to a fragment produce no
event of their own.

Requests are paired with their responses per flow by outstation, master and application
sequence number (at most :data:`MAX_OUTSTANDING` for :data:`PAIR_TIMEOUT` seconds), and the
fragments of a multi-fragment response all carry their request's function. Select and
operate are checked against each other (select before operate).

Polling repeats the same short object lists (class reads, controls and their echoes, event reports)
and the same point ranges: their decoding is remembered (bounded, :data:`MAX_CACHED`) and events
share the lists it gives, so events are to be read, not changed.

Three outcomes per frame, nothing else: events (an anomaly event has ``event.type``
``["protocol", "error"]`` and the list ``dnp3.anomaly``), no event (a segment awaiting the
rest of its fragment), or :class:`~sensor.dissect.ProtocolViolation` when the flow does not
frame as DNP3 at all.
"""

from __future__ import annotations

import math
import struct
import time
from functools import lru_cache
from typing import Any

from sensor.dissect import Dissector, Event, ProtocolViolation, WiresharkFields
from sensor.framing import FramedSession
from sensor.schema import Field

__all__ = ["DISSECTOR", "Dnp3Session", "probe", "port_probe", "crc16", "FUNCTION_NAMES", "CONTROL_STATUS_NAMES",
           "MAX_FRAGMENT", "MAX_ASSEMBLIES", "MAX_HEADERS", "MAX_POINTS", "MAX_OUTSTANDING", "PAIR_TIMEOUT",
           "MAX_JUNK", "MAX_BAD_FRAMES", "MAX_BUFFER", "MAX_UNANSWERED", "MAX_CACHED", "MAX_CACHED_OBJECTS"]

MAX_FRAGMENT = 64 * 249
"""Octets one application fragment may reach (64 full segments: the transport sequence space)."""
MAX_ASSEMBLIES = 16
"""Fragments being reassembled at once per flow (per direction and link address pair)."""
MAX_HEADERS = 256
"""Object headers parsed per fragment; the rest of the fragment is left (anomaly too-many-objects)."""
MAX_POINTS = 2048
"""Points recorded per fragment (indexes, values, tags); the rest are counted in dnp3.points_omitted."""
MAX_OUTSTANDING = 1000
"""Requests awaiting a response per flow; beyond it the oldest is forgotten (counted)."""
PAIR_TIMEOUT = 60.0
"""Seconds after which an unanswered request no longer pairs with a response."""
MAX_UNANSWERED = 32
"""Requests in a row to one outstation without any response before the anomaly request-flood."""
MAX_JUNK = 1024
"""Octets without a start pair 0x05 0x64 tolerated in a row between frames before the flow is given up."""
MAX_BAD_FRAMES = 16
"""Frames in a row with a bad header CRC before the flow is given up."""
MAX_BUFFER = 64 << 10
"""Octets one direction may scan for a frame after a capture gap before the flow is given up."""
MAX_CACHED = 4096
"""Distinct short object lists remembered with what they decode to (polling repeats them)."""
MAX_CACHED_OBJECTS = 64
"""Longest object list (octets) remembered that way."""

_ERROR_TYPE = ("protocol", "error")
_START = b"\x05\x64"

# -- CRC-16/DNP -----------------------------------------------------------------------------------
# Polynomial 0x3D65 bit-reflected (0xA6BC), initial value 0, result complemented, sent low octet
# first. _CRC2 steps the register over two octets at once (a 16-bit register is consumed by 16
# bits of data, so the result depends on register ^ word only).


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA6BC if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_CRC1 = _crc_table()
_CRC2 = tuple((((x >> 8) ^ _CRC1[x & 0xFF]) >> 8) ^ _CRC1[((x >> 8) ^ _CRC1[x & 0xFF]) & 0xFF]
              for x in range(65536))
_WORDS = tuple(struct.Struct(f"<{k}H") for k in range(9))  # k 16-bit words: a block holds at most 8


def _crc(buf: bytes, start: int, n: int) -> int:
    """CRC-16/DNP of ``buf[start:start + n]`` (n <= 17), complemented as sent."""
    crc = 0
    table = _CRC2
    for word in _WORDS[n >> 1].unpack_from(buf, start):
        crc = table[crc ^ word]
    if n & 1:
        crc = (crc >> 8) ^ _CRC1[(crc ^ buf[start + n - 1]) & 0xFF]
    return crc ^ 0xFFFF


def crc16(data: bytes) -> int:
    """CRC-16/DNP of ``data`` (any length), as the value sent low octet first after a block."""
    crc = 0
    for byte in data:
        crc = (crc >> 8) ^ _CRC1[(crc ^ byte) & 0xFF]
    return crc ^ 0xFFFF


def _crc_ok(buf: bytes, start: int, n: int) -> bool:
    """The n octets at ``start`` are followed by their right CRC."""
    if n == 16:  # a full block: eight words, unrolled
        t = _CRC2
        w0, w1, w2, w3, w4, w5, w6, w7, crc = _BLOCK.unpack_from(buf, start)
        return t[t[t[t[t[t[t[t[w0] ^ w1] ^ w2] ^ w3] ^ w4] ^ w5] ^ w6] ^ w7] ^ 0xFFFF == crc
    end = start + n
    return _crc(buf, start, n) == buf[end] | buf[end + 1] << 8


_BLOCK = struct.Struct("<9H")  # a 16-octet block and its CRC
_HEADER = struct.Struct("<5H")  # the 8 octets of a link header and its CRC


def _header_ok(buf: bytes, start: int) -> bool:
    """The link header at ``start`` has the right CRC."""
    t = _CRC2
    w0, w1, w2, w3, crc = _HEADER.unpack_from(buf, start)
    return t[t[t[t[w0] ^ w1] ^ w2] ^ w3] ^ 0xFFFF == crc


# -- link layer -----------------------------------------------------------------------------------

# function code -> (name, ics.operation); primary frames (PRM=1) and secondary frames (PRM=0)
_PRIMARY: dict[int, tuple[str, str]] = {
    0: ("reset_link_states", "session"),
    1: ("reset_user_process", "session"),
    2: ("test_link_states", "diagnostic"),
    3: ("confirmed_user_data", "other"),
    4: ("unconfirmed_user_data", "other"),
    9: ("request_link_status", "diagnostic"),
}
_SECONDARY: dict[int, tuple[str, str]] = {
    0: ("ack", "session"),
    1: ("nack", "session"),
    11: ("status", "diagnostic"),
    14: ("not_functioning", "diagnostic"),
    15: ("not_supported", "session"),
}


def _link_entry(ctl: int) -> tuple[str, str, str, bool]:
    """CONTROL octet -> (link function name, event action, ics.operation, known)."""
    code = ctl & 0x0F
    entry = (_PRIMARY if ctl & 0x40 else _SECONDARY).get(code)
    if entry is None:
        return f"unknown-{code}", f"link_unknown-{code}", "other", False
    return entry[0], "link_" + entry[0], entry[1], True


_LINK = tuple(_link_entry(ctl) for ctl in range(256))

# -- application layer: functions ----------------------------------------------------------------

REQUEST, RESPONSE, UNSOLICITED = "request", "response", "unsolicited"


class _Function:
    """Everything the dissector knows about one application function code."""

    __slots__ = ("code", "name", "operation", "role", "data", "answered", "known", "description")

    def __init__(self, code: int, name: str, operation: str, role: str, data: bool, answered: bool,
                 description: str, known: bool = True) -> None:
        self.code = code
        self.name = name
        self.operation = operation
        self.role = role
        self.data = data  # object headers are followed by object data (else headers, ranges and indexes only)
        self.answered = answered  # the outstation answers with a response (no "_nr" function, no confirm)
        self.description = description
        self.known = known


_F = _Function
_PUBLIC = (
    _F(0, "confirm", "session", RESPONSE, False, False, "confirm a fragment that asked for it (CON)"),
    _F(1, "read", "read", REQUEST, False, True, "read points or class data"),
    _F(2, "write", "write", REQUEST, True, True, "write points, time, IIN bits, file data"),
    _F(3, "select", "write", REQUEST, True, True, "select outputs (first half of select before operate)"),
    _F(4, "operate", "write", REQUEST, True, True, "operate selected outputs"),
    _F(5, "direct_operate", "write", REQUEST, True, True, "operate outputs without select"),
    _F(6, "direct_operate_nr", "write", REQUEST, True, False, "direct operate, no response"),
    _F(7, "immediate_freeze", "read", REQUEST, False, True, "copy counters to frozen counters"),
    _F(8, "immediate_freeze_nr", "read", REQUEST, False, False, "immediate freeze, no response"),
    _F(9, "freeze_clear", "write", REQUEST, False, True, "freeze counters and clear them"),
    _F(10, "freeze_clear_nr", "write", REQUEST, False, False, "freeze and clear, no response"),
    _F(11, "freeze_at_time", "read", REQUEST, False, True, "freeze counters at a time (g50v2)"),
    _F(12, "freeze_at_time_nr", "read", REQUEST, False, False, "freeze at time, no response"),
    _F(13, "cold_restart", "restart", REQUEST, False, True, "restart the outstation completely"),
    _F(14, "warm_restart", "restart", REQUEST, False, True, "restart the DNP3 application"),
    _F(15, "initialize_data", "write", REQUEST, False, True, "set data to initial values (obsolete)"),
    _F(16, "initialize_application", "restart", REQUEST, True, True, "initialize an application (g90)"),
    _F(17, "start_application", "control_run", REQUEST, True, True, "start an application (g90)"),
    _F(18, "stop_application", "control_stop", REQUEST, True, True, "stop an application (g90)"),
    _F(19, "save_configuration", "config_change", REQUEST, False, True, "save the configuration (deprecated)"),
    _F(20, "enable_unsolicited", "config_change", REQUEST, False, True, "enable unsolicited responses per class"),
    _F(21, "disable_unsolicited", "config_change", REQUEST, False, True,
       "disable unsolicited responses per class"),
    _F(22, "assign_class", "config_change", REQUEST, False, True, "assign points to event classes"),
    _F(23, "delay_measure", "time_sync", REQUEST, False, True, "measure the link delay (serial time sync)"),
    _F(24, "record_current_time", "time_sync", REQUEST, False, True, "record the time (LAN time sync)"),
    _F(25, "open_file", "file_read", REQUEST, True, True, "open a file (g70v3)"),
    _F(26, "close_file", "file_read", REQUEST, True, True, "close a file (g70v4)"),
    _F(27, "delete_file", "file_delete", REQUEST, True, True, "delete a file (g70v3)"),
    _F(28, "get_file_info", "file_read", REQUEST, True, True, "get file information (g70v7)"),
    _F(29, "authenticate_file", "auth", REQUEST, True, True, "obtain a file authentication key (g70v2)"),
    _F(30, "abort_file", "file_read", REQUEST, True, True, "abort a file transfer (g70v4)"),
    _F(31, "activate_config", "config_change", REQUEST, True, True, "activate a configuration"),
    _F(32, "authenticate_request", "auth", REQUEST, True, True, "secure authentication request (g120)"),
    _F(33, "authenticate_error", "auth", REQUEST, True, False,
       "secure authentication error, no acknowledgement (IEEE 1815-2012: AUTH_REQ_NO_ACK)"),
    _F(129, "response", "report", RESPONSE, True, False, "solicited response"),
    _F(130, "unsolicited_response", "report", UNSOLICITED, True, False, "unsolicited response"),
    _F(131, "authenticate_response", "auth", RESPONSE, True, False, "secure authentication response (g120)"),
)
_FUNCTIONS: tuple[_Function, ...] = tuple(
    next((f for f in _PUBLIC if f.code == code), None)
    or _F(code, f"unknown-{code}", "other", REQUEST if code < 128 else RESPONSE, False, False,
          "reserved function code", known=False)
    for code in range(256)
)
FUNCTION_NAMES: tuple[str, ...] = tuple(f.name for f in _FUNCTIONS)
"""Application function code -> name (lower snake case), ``unknown-<n>`` for reserved codes."""

# -- internal indications -------------------------------------------------------------------------

_IIN1_BITS = ("broadcast", "class_1_events", "class_2_events", "class_3_events", "need_time",
              "local_control", "device_trouble", "device_restart")
_IIN2_BITS = ("no_func_code_support", "object_unknown", "parameter_error", "event_buffer_overflow",
              "already_executing", "config_corrupt", "reserved_2", "reserved_1")
_IIN1 = tuple(tuple(name for bit, name in enumerate(_IIN1_BITS) if b >> bit & 1) for b in range(256))
_IIN2 = tuple(tuple(name for bit, name in enumerate(_IIN2_BITS) if b >> bit & 1) for b in range(256))
# IIN2 bits that say the request failed, in order of precedence (event buffer overflow does not)
_IIN_FAILURES = ((0x01, "no_func_code_support"), (0x02, "object_unknown"), (0x04, "parameter_error"),
                 (0x10, "already_executing"), (0x20, "config_corrupt"))

# -- control status, control codes ----------------------------------------------------------------

_CONTROL_STATUS: dict[int, str] = {
    0: "success", 1: "timeout", 2: "no_select", 3: "format_error", 4: "not_supported", 5: "already_active",
    6: "hardware_error", 7: "local", 8: "too_many_objs", 9: "not_authorized", 10: "automation_inhibit",
    11: "processing_limited", 12: "out_of_range", 13: "downstream_local", 14: "already_complete",
    15: "blocked", 16: "canceled", 17: "blocked_other_master", 18: "downstream_fail", 126: "non_participating",
    127: "undefined",
}
CONTROL_STATUS_NAMES = tuple(_CONTROL_STATUS.get(c, f"unknown-{c}") for c in range(256))
_OP_TYPES = ("nul", "pulse_on", "pulse_off", "latch_on", "latch_off") + tuple(f"unknown-{n}" for n in range(5, 16))
_TRIP_CLOSE = ("nul", "close", "trip", "reserved")

# -- time -----------------------------------------------------------------------------------------

_MAX_MS = 253402300800000  # 10000-01-01T00:00:00Z: DNP3 time is 48-bit milliseconds since 1970, UTC


def _iso48(low: int, high: int) -> str | None:
    """A 48-bit DNP3 time given as its low 32 and high 16 bits."""
    return _iso(low | high << 32)


def _iso(ms: int) -> str | None:
    """DNP3 absolute time (milliseconds since 1970-01-01 UTC) as ISO 8601; None beyond year 9999."""
    if ms >= _MAX_MS:
        return None
    seconds, milli = divmod(ms, 1000)
    return _second(seconds) + _MILLIS[milli]


@lru_cache(maxsize=4096)
def _second(seconds: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.`` of a second since 1970 (event times of one response share seconds)."""
    t = time.gmtime(seconds)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}."


_MILLIS = tuple(f"{ms:03d}Z" for ms in range(1000))


# -- objects --------------------------------------------------------------------------------------

K_NONE, K_FIXED, K_PACKED, K_VARSIZE, K_VARIATION, K_ATTRIBUTE, K_CROB = range(7)
V_NONE, V_BIT7, V_DOUBLE = -1, -2, -3  # value positions that are no tuple index
S_NONE, S_LOW7 = -1, -2  # status positions likewise

# Point flags: which bits are abnormal, and their names, per family (bit 0 ONLINE is normal when set).
_COMMON_FLAGS = ((0x02, "restart"), (0x04, "comm_lost"), (0x08, "remote_forced"), (0x10, "local_forced"))
_FAMILY_BITS = {
    "binary": _COMMON_FLAGS + ((0x20, "chatter_filter"),),
    "output": _COMMON_FLAGS,
    "counter": _COMMON_FLAGS + ((0x20, "rollover"), (0x40, "discontinuity")),
    "analog": _COMMON_FLAGS + ((0x20, "over_range"), (0x40, "reference_err")),
}


def _family(bits: tuple[tuple[int, str], ...]) -> tuple[int, tuple[tuple[str, ...], ...]]:
    """(mask of the meaningful bits, names of the abnormal flags per flags octet)."""
    mask = 0x01
    for bit, _ in bits:
        mask |= bit
    names = tuple((() if b & 1 else ("offline",)) + tuple(name for bit, name in bits if b & bit) for b in range(256))
    return mask, names


_FAMILIES = {name: _family(bits) for name, bits in _FAMILY_BITS.items()}


class _Obj:
    """Layout and meaning of one group/variation."""

    __slots__ = ("code", "group", "variation", "type", "name", "kind", "size", "st", "flags", "value", "time",
                 "status", "rel", "mask", "quality", "numeric", "known", "undefined", "floating", "_rows")

    def __init__(self, group: int, variation: int, name: str, kind: int, fmt: str = "", flags: int = -1,
                 value: int = V_NONE, time_at: int = -1, status: int = S_NONE, rel: int = -1,
                 family: str = "", numeric: bool = True, size: int = 0, known: bool = True,
                 undefined: bool = False) -> None:
        self.code = group << 8 | variation
        self.group = group
        self.variation = variation
        self.type = f"g{group}v{variation}"
        self.name = name
        self.kind = kind
        self.st = struct.Struct("<" + fmt) if fmt else None
        self.size = self.st.size if self.st is not None else size  # octets (K_FIXED), bits per point (K_PACKED)
        self.flags = flags
        self.value = value
        self.time = time_at
        self.status = status
        self.rel = rel
        self.mask, self.quality = _FAMILIES[family] if family else (0, ())
        self.numeric = numeric
        self.known = known
        self.undefined = undefined  # parsed (its layout is plain) but not defined: anomaly unknown-object
        self.floating = "f" in fmt or "d" in fmt
        # one object preceded by an index of 0, 1, 2 or 4 octets
        self._rows = tuple(struct.Struct("<" + ("", "B", "H", "", "I")[pw] + fmt) if fmt and pw != 3 else None
                           for pw in range(5))

    def rows(self, pw: int) -> struct.Struct:
        """The struct of one object preceded by an index of ``pw`` octets (0, 1, 2 or 4)."""
        return self._rows[pw]  # type: ignore[return-value]


def _object_table() -> dict[int, _Obj]:
    O = _Obj  # noqa: E741 - one letter keeps the table readable
    objs: list[_Obj] = [
        O(1, 0, "binary input, any variation", K_NONE),
        O(1, 1, "binary input, packed", K_PACKED, size=1, family="binary"),
        O(1, 2, "binary input with flags", K_FIXED, "B", 0, V_BIT7, family="binary"),
        O(2, 0, "binary input event, any variation", K_NONE),
        O(2, 1, "binary input event", K_FIXED, "B", 0, V_BIT7, family="binary"),
        O(2, 2, "binary input event with absolute time", K_FIXED, "BIH", 0, V_BIT7, 1, family="binary"),
        O(2, 3, "binary input event with relative time", K_FIXED, "BH", 0, V_BIT7, rel=1, family="binary"),
        O(3, 0, "double-bit binary input, any variation", K_NONE),
        O(3, 1, "double-bit binary input, packed", K_PACKED, size=2, family="binary"),
        O(3, 2, "double-bit binary input with flags", K_FIXED, "B", 0, V_DOUBLE, family="binary"),
        O(4, 0, "double-bit binary input event, any variation", K_NONE),
        O(4, 1, "double-bit binary input event", K_FIXED, "B", 0, V_DOUBLE, family="binary"),
        O(4, 2, "double-bit binary input event with absolute time", K_FIXED, "BIH", 0, V_DOUBLE, 1, family="binary"),
        O(4, 3, "double-bit binary input event with relative time", K_FIXED, "BH", 0, V_DOUBLE, rel=1,
          family="binary"),
        O(10, 0, "binary output, any variation", K_NONE),
        O(10, 1, "binary output, packed", K_PACKED, size=1, family="output"),
        O(10, 2, "binary output status with flags", K_FIXED, "B", 0, V_BIT7, family="output"),
        O(11, 0, "binary output event, any variation", K_NONE),
        O(11, 1, "binary output event", K_FIXED, "B", 0, V_BIT7, family="output"),
        O(11, 2, "binary output event with time", K_FIXED, "BIH", 0, V_BIT7, 1, family="output"),
        O(12, 0, "binary command, any variation", K_NONE),
        O(12, 1, "control relay output block", K_CROB, "BBIIB", numeric=False),
        O(12, 2, "pattern control block", K_CROB, "BBIIB", numeric=False),
        O(12, 3, "pattern mask", K_PACKED, size=1),
        O(13, 0, "binary output command event, any variation", K_NONE),
        O(13, 1, "binary output command event", K_FIXED, "B", 0, V_BIT7, status=S_LOW7),
        O(13, 2, "binary output command event with time", K_FIXED, "BIH", 0, V_BIT7, 1, status=S_LOW7),
        O(20, 0, "counter, any variation", K_NONE),
        O(21, 0, "frozen counter, any variation", K_NONE),
        O(22, 0, "counter event, any variation", K_NONE),
        O(23, 0, "frozen counter event, any variation", K_NONE),
        O(30, 0, "analog input, any variation", K_NONE),
        O(31, 0, "frozen analog input, any variation", K_NONE),
        O(32, 0, "analog input event, any variation", K_NONE),
        O(33, 0, "frozen analog input event, any variation", K_NONE),
        O(34, 0, "analog input deadband, any variation", K_NONE),
        O(34, 1, "analog input deadband, 16-bit", K_FIXED, "H", value=0),
        O(34, 2, "analog input deadband, 32-bit", K_FIXED, "I", value=0),
        O(34, 3, "analog input deadband, single-precision float", K_FIXED, "f", value=0),
        O(40, 0, "analog output status, any variation", K_NONE),
        O(40, 1, "analog output status, 32-bit with flags", K_FIXED, "Bi", 0, 1, family="analog"),
        O(40, 2, "analog output status, 16-bit with flags", K_FIXED, "Bh", 0, 1, family="analog"),
        O(40, 3, "analog output status, single-precision float with flags", K_FIXED, "Bf", 0, 1, family="analog"),
        O(40, 4, "analog output status, double-precision float with flags", K_FIXED, "Bd", 0, 1, family="analog"),
        O(41, 0, "analog output block, any variation", K_NONE),
        O(41, 1, "analog output block, 32-bit", K_FIXED, "iB", value=0, status=1),
        O(41, 2, "analog output block, 16-bit", K_FIXED, "hB", value=0, status=1),
        O(41, 3, "analog output block, single-precision float", K_FIXED, "fB", value=0, status=1),
        O(41, 4, "analog output block, double-precision float", K_FIXED, "dB", value=0, status=1),
        O(42, 0, "analog output event, any variation", K_NONE),
        O(43, 0, "analog output command event, any variation", K_NONE),
        O(50, 0, "time and date, any variation", K_NONE),
        O(50, 1, "time and date, absolute time", K_FIXED, "IH", time_at=0, numeric=False),
        O(50, 2, "time and date, absolute time and interval", K_FIXED, "IHI", time_at=0, numeric=False),
        O(50, 3, "time and date, absolute time at last recorded time", K_FIXED, "IH", time_at=0, numeric=False),
        O(50, 4, "time and date, indexed absolute time and long interval", K_FIXED, "IHIB", time_at=0,
          numeric=False),
        O(51, 1, "time and date CTO, absolute time, synchronized", K_FIXED, "IH", time_at=0, numeric=False),
        O(51, 2, "time and date CTO, absolute time, unsynchronized", K_FIXED, "IH", time_at=0, numeric=False),
        O(52, 1, "time delay, coarse (seconds)", K_FIXED, "H", value=0, numeric=False),
        O(52, 2, "time delay, fine (milliseconds)", K_FIXED, "H", value=0, numeric=False),
        O(60, 1, "class 0 data", K_NONE),
        O(60, 2, "class 1 data", K_NONE),
        O(60, 3, "class 2 data", K_NONE),
        O(60, 4, "class 3 data", K_NONE),
        O(70, 0, "file-control, any variation", K_NONE),
        O(70, 1, "file-control, file identifier (obsolete)", K_VARSIZE),
        O(70, 2, "file-control, authentication", K_VARSIZE),
        O(70, 3, "file-control, file command", K_VARSIZE),
        O(70, 4, "file-control, file command status", K_VARSIZE),
        O(70, 5, "file-control, file transport", K_VARSIZE),
        O(70, 6, "file-control, file transport status", K_VARSIZE),
        O(70, 7, "file-control, file descriptor", K_VARSIZE),
        O(70, 8, "file-control, file specification string", K_VARSIZE),
        O(80, 1, "internal indications", K_PACKED, size=1, numeric=False),
        O(81, 1, "device storage", K_FIXED, "BBB", numeric=False),
        O(82, 1, "device profile", K_VARSIZE),
        O(83, 1, "private registration object", K_VARSIZE),
        O(83, 2, "private registration object descriptor", K_VARSIZE),
        O(85, 0, "data set prototype, any variation", K_NONE),
        O(85, 1, "data set prototype", K_VARSIZE),
        O(86, 0, "data set descriptor, any variation", K_NONE),
        O(86, 1, "data set descriptor, contents", K_VARSIZE),
        O(86, 2, "data set descriptor, characteristics", K_FIXED, "B", numeric=False),
        O(86, 3, "data set descriptor, point index attributes", K_VARSIZE),
        O(87, 0, "data set, any variation", K_NONE),
        O(87, 1, "data set, present value", K_VARSIZE),
        O(88, 0, "data set event, any variation", K_NONE),
        O(88, 1, "data set event, snapshot", K_VARSIZE),
        O(90, 1, "application identifier", K_VARSIZE),
        O(91, 1, "status of requested operation", K_VARSIZE),
        O(101, 0, "binary-coded decimal integer, any variation", K_NONE),
        O(101, 1, "binary-coded decimal integer, small", K_FIXED, "H", numeric=False),
        O(101, 2, "binary-coded decimal integer, medium", K_FIXED, "I", numeric=False),
        O(101, 3, "binary-coded decimal integer, large", K_FIXED, "Q", numeric=False),
        O(102, 0, "unsigned integer, any variation", K_NONE),
        O(102, 1, "unsigned integer, 8-bit", K_FIXED, "B", value=0),
        O(120, 0, "authentication, any variation", K_NONE),
        *(O(120, v, f"authentication, {name}", K_VARSIZE, size={3: 6, 4: 2}.get(v, 0)) for v, name in (
            (1, "challenge"), (2, "reply"), (3, "aggressive mode request"), (4, "session key status request"),
            (5, "session key status"), (6, "session key change"), (7, "error"), (8, "user certificate"),
            (9, "message authentication code"), (10, "user status change"), (11, "update key change request"),
            (12, "update key change reply"), (13, "update key change"), (14, "update key change signature"),
            (15, "update key change confirmation"))),
        O(121, 0, "security statistic, any variation", K_NONE),
        O(121, 1, "security statistic, 32-bit with flags", K_FIXED, "BHI", 0, 2, family="counter"),
        O(122, 0, "security statistic event, any variation", K_NONE),
        O(122, 1, "security statistic event, 32-bit with flags", K_FIXED, "BHI", 0, 2, family="counter"),
        O(122, 2, "security statistic event, 32-bit with flags and time", K_FIXED, "BHIIH", 0, 2, 3,
          family="counter"),
    ]
    # counters and frozen counters (flags, value[, time]); "delta" variations are obsolete
    for group, what in ((20, "counter"), (21, "frozen counter"), (22, "counter event"),
                        (23, "frozen counter event")):
        layouts = [(1, "32-bit with flags", "BI"), (2, "16-bit with flags", "BH"),
                   (3, "32-bit delta with flags", "BI"), (4, "16-bit delta with flags", "BH")]
        if group == 20:
            layouts += [(5, "32-bit", "I"), (6, "16-bit", "H"), (7, "32-bit delta", "I"), (8, "16-bit delta", "H")]
        elif group == 21:
            layouts += [(5, "32-bit with flags and time", "BIIH"), (6, "16-bit with flags and time", "BHIH"),
                        (7, "32-bit delta with flags and time", "BIIH"),
                        (8, "16-bit delta with flags and time", "BHIH"), (9, "32-bit", "I"), (10, "16-bit", "H"),
                        (11, "32-bit delta", "I"), (12, "16-bit delta", "H")]
        else:
            layouts += [(5, "32-bit with flags and time", "BIIH"), (6, "16-bit with flags and time", "BHIH"),
                        (7, "32-bit delta with flags and time", "BIIH"),
                        (8, "16-bit delta with flags and time", "BHIH")]
        for v, name, fmt in layouts:
            flagged = fmt[0] == "B"
            objs.append(O(group, v, f"{what}, {name}", K_FIXED, fmt, 0 if flagged else -1, 1 if flagged else 0,
                          2 if len(fmt) == 4 else -1, family="counter" if flagged else ""))
    # analog inputs, events and outputs events (flags, value[, time])
    analog = {
        30: ("analog input", [(1, "32-bit with flags", "Bi"), (2, "16-bit with flags", "Bh"), (3, "32-bit", "i"),
                              (4, "16-bit", "h"), (5, "single-precision float with flags", "Bf"),
                              (6, "double-precision float with flags", "Bd")]),
        31: ("frozen analog input", [(1, "32-bit with flags", "Bi"), (2, "16-bit with flags", "Bh"),
                                     (3, "32-bit with time of freeze", "BiIH"),
                                     (4, "16-bit with time of freeze", "BhIH"), (5, "32-bit", "i"),
                                     (6, "16-bit", "h"), (7, "single-precision float with flags", "Bf"),
                                     (8, "double-precision float with flags", "Bd")]),
    }
    events = [(1, "32-bit", "Bi"), (2, "16-bit", "Bh"), (3, "32-bit with time", "BiIH"),
              (4, "16-bit with time", "BhIH"), (5, "single-precision float", "Bf"), (6, "double-precision float", "Bd"),
              (7, "single-precision float with time", "BfIH"), (8, "double-precision float with time", "BdIH")]
    analog[32] = ("analog input event", events)
    analog[33] = ("frozen analog input event", events)
    analog[42] = ("analog output event", events)
    for group, (what, layouts) in analog.items():
        for v, name, fmt in layouts:
            flagged = fmt[0] == "B"
            objs.append(O(group, v, f"{what}, {name}", K_FIXED, fmt, 0 if flagged else -1, 1 if flagged else 0,
                          2 if len(fmt) == 4 else -1, family="analog" if flagged else ""))
    for v, name, fmt in events:  # analog output command events: status octet first
        objs.append(O(43, v, f"analog output command event, {name}", K_FIXED, fmt, value=1,
                      time_at=2 if len(fmt) == 4 else -1, status=0))
    for group, what in ((110, "octet string"), (111, "octet string event"), (112, "virtual terminal output block"),
                        (113, "virtual terminal event data")):
        objs += [O(group, v, f"{what}, {v} octets", K_VARIATION, size=v, numeric=False) for v in range(1, 256)]
        objs.append(O(group, 0, f"{what}, any length", K_VARIATION, size=0, numeric=False))
    objs += [O(0, v, _ATTRIBUTE_NAMES.get(v, f"device attribute {v}"), K_ATTRIBUTE, numeric=False)
             for v in range(1, 254)]
    objs += [O(0, 0, "device attribute 0 (undefined)", K_ATTRIBUTE, numeric=False, undefined=True),
             O(0, 254, "device attributes, all (request)", K_NONE), O(0, 255, "device attributes, list", K_ATTRIBUTE)]
    return {o.code: o for o in objs}


# Group 0 device attribute variations, the identity ones with short names (dnp3.device.*)
_ATTRIBUTE_NAMES: dict[int, str] = {
    209: "secure authentication version", 240: "maximum transmit fragment size",
    241: "maximum receive fragment size", 242: "software version", 243: "hardware version", 244: "owner name",
    245: "location", 246: "device id", 247: "device name", 248: "serial number",
    249: "subset and conformance", 250: "product name and model", 252: "manufacturer",
}
_IDENTITY = {242: "dnp3.device.software_version", 243: "dnp3.device.hardware_version",
             245: "dnp3.device.location", 246: "dnp3.device.id", 247: "dnp3.device.name",
             248: "dnp3.device.serial_number", 250: "dnp3.device.product", 252: "dnp3.device.manufacturer"}

_OBJECTS = _object_table()


def _unknown_object(group: int, variation: int) -> _Obj:
    return _Obj(group, variation, "unknown object", K_NONE, known=False)


# -- file control and authentication objects (variable size) --------------------------------------

_FILE_MODES = ("null", "read", "write", "append")
_FILE_STATUS: dict[int, str] = {
    0: "success", 1: "permission_denied", 2: "invalid_mode", 3: "file_not_found", 4: "file_locked",
    5: "too_many_open", 6: "invalid_handle", 7: "write_block_size", 8: "comm_lost", 9: "cannot_abort",
    16: "not_opened", 17: "handle_expired", 18: "buffer_overrun", 19: "fatal", 20: "block_seq", 255: "undefined",
}
_AUTH_ERRORS: dict[int, str] = {
    1: "authentication_failed", 2: "unexpected_response", 3: "no_response", 4: "aggressive_mode_not_supported",
    5: "mac_algorithm_not_supported", 6: "key_wrap_algorithm_not_supported", 7: "authorization_failed",
    8: "update_key_method_not_permitted", 9: "invalid_signature", 10: "invalid_certification_data",
    11: "unknown_user", 12: "max_session_key_status_requests_exceeded",
}
_KEY_STATUS = {1: "ok", 2: "not_init", 3: "comm_fail", 4: "auth_fail"}
_FILE_COMMAND = struct.Struct("<HHIHHIIHHH")  # name offset, size, created (48 bits), permissions, key, size, mode...
_FILE_STATUS_ST = struct.Struct("<IIHHB")  # handle, size, max block, request id, status
_FILE_TRANSPORT = struct.Struct("<II")  # handle, block number (bit 31: last block)
_FILE_DESCRIPTOR = struct.Struct("<HHHIIHHH")  # name offset, size, type, size, created (48 bits), perms, request id
_FILE_AUTH = struct.Struct("<HHHHI")  # user offset, size, password offset, size, authentication key
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_IH = struct.Struct("<IH")


def _text(raw: bytes) -> str:
    """Octets as text: printable ASCII kept, the rest escaped as \\xNN."""
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return "".join(chr(b) if 32 <= b < 127 else f"\\x{b:02x}" for b in raw)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _name_at(buf: bytes, start: int, end: int, offset: int, size: int) -> str | None:
    """A string the object locates by its offset from the object start; None if it lies outside."""
    if offset + size > end - start:
        return None
    return _text(buf[start + offset:start + offset + size])


def _file_object(variation: int, buf: bytes, s: int, e: int, rec: dict[str, Any]) -> str | None:
    """Decode a g70 object (``buf[s:e]``) into ``rec``; return an anomaly reason or None."""
    size = e - s
    if variation == 3 or variation == 7:
        st = _FILE_COMMAND if variation == 3 else _FILE_DESCRIPTOR
        if size < st.size:
            return "object-data-truncated"
        if variation == 3:
            offset, length, lo, hi, perms, key, fsize, mode, block, request = st.unpack_from(buf, s)
            rec.update(authentication_key=key, operational_mode=_FILE_MODES[mode] if mode < 4 else f"unknown-{mode}",
                       maximum_block_size=block)
        else:
            offset, length, ftype, fsize, lo, hi, perms, request = st.unpack_from(buf, s)
            rec["file_type"] = "directory" if ftype == 0 else "file" if ftype == 1 else f"unknown-{ftype}"
        rec.update(filename_offset=offset, filename_size=length, file_size=fsize, permissions=perms,
                   request_id=request)
        created = _iso(lo | hi << 32)
        if created is not None:
            rec["created"] = created
        name = _name_at(buf, s, e, offset, length)
        if name is None:
            return "file-name-out-of-bounds"
        rec["filename"] = name
    elif variation == 4:
        if size < _FILE_STATUS_ST.size:
            return "object-data-truncated"
        handle, fsize, block, request, status = _FILE_STATUS_ST.unpack_from(buf, s)
        rec.update(file_handle=handle, file_size=fsize, maximum_block_size=block, request_id=request,
                   status_code=status, status=_FILE_STATUS.get(status, f"unknown-{status}"))
        if size > _FILE_STATUS_ST.size:
            rec["text"] = _text(buf[s + 13:e])
    elif variation == 5 or variation == 6:
        if size < 8 + (variation == 6):
            return "object-data-truncated"
        handle, block = _FILE_TRANSPORT.unpack_from(buf, s)
        rec.update(file_handle=handle, block_number=block & 0x7FFFFFFF, last_block=block >= 0x80000000)
        if variation == 5:
            rec["data_size"] = size - 8
        else:
            status = buf[s + 8]
            rec.update(status_code=status, status=_FILE_STATUS.get(status, f"unknown-{status}"))
            if size > 9:
                rec["text"] = _text(buf[s + 9:e])
    elif variation == 2:
        if size < _FILE_AUTH.size:
            return "object-data-truncated"
        user_offset, user_size, password_offset, password_size, key = _FILE_AUTH.unpack_from(buf, s)
        rec.update(authentication_key=key, password_size=password_size)  # the password itself is not kept
        user = _name_at(buf, s, e, user_offset, user_size)
        if user is None:
            return "file-name-out-of-bounds"
        rec["username"] = user
    elif variation == 8:
        rec["filename"] = _text(buf[s:e])
    return None


def _auth_object(variation: int, buf: bytes, s: int, e: int, rec: dict[str, Any]) -> str | None:
    """Decode the fixed part of a g120 object (``buf[s:e]``) into ``rec``."""
    size = e - s
    if variation in (1, 2, 3, 5, 6, 7):  # challenge/key sequence number and user number first
        if size < 6:
            return "object-data-truncated"
        rec["sequence"], rec["user"] = _IH.unpack_from(buf, s)
        if variation == 1 and size >= 8:
            rec["mac_algorithm"], rec["reason"] = buf[s + 6], buf[s + 7]
        elif variation == 5 and size >= 9:
            status = buf[s + 7]
            rec["key_status"] = _KEY_STATUS.get(status, f"unknown-{status}")
        elif variation == 7:
            if size < 9:
                return "object-data-truncated"
            rec["association"] = _U16.unpack_from(buf, s + 6)[0]
            code = buf[s + 8]
            rec["error_code"] = code
            rec["error"] = _AUTH_ERRORS.get(code, f"unknown-{code}")
    elif variation == 4:
        if size < 2:
            return "object-data-truncated"
        rec["user"] = _U16.unpack_from(buf, s)[0]
    return None


_ATTR_TYPES = {1: "vstr", 2: "uint", 3: "int", 4: "flt", 5: "ostr", 6: "bstr", 7: "time", 254: "list"}


def _attribute(variation: int, buf: bytes, s: int, e: int, rec: dict[str, Any]) -> None:
    """A device attribute value (data type code and length read by the caller) into ``rec``."""
    dtype = rec["data_type"]
    raw = buf[s:e]
    if dtype == 1:
        rec["value"] = _text(raw)
    elif dtype == 2 and 0 < len(raw) <= 8:
        rec["value"] = int.from_bytes(raw, "little")
    elif dtype == 3 and 0 < len(raw) <= 8:
        rec["value"] = int.from_bytes(raw, "little", signed=True)
    elif dtype == 4 and len(raw) in (4, 8):
        value = struct.unpack("<f" if len(raw) == 4 else "<d", raw)[0]
        rec["value"] = value if math.isfinite(value) else str(value)
    elif dtype == 254:  # list of attribute variations: (variation, properties) pairs
        rec["value"] = [raw[k] for k in range(0, len(raw) - 1, 2)]
    else:
        rec["value"] = raw.hex()


# -- registration tables: operations --------------------------------------------------------------


def _operations() -> dict[str, str]:
    """Function name -> ics.operation, link frames as `link_<function>`; rows written `function/what`
    override the function's operation when the fragment carries those objects (see dnp3.md)."""
    table: dict[str, str] = {}
    for f in _PUBLIC:
        table[f.name] = f.operation
    table["read/device_attributes"] = "identity"
    table["read/file"] = "file_read"
    table["write/time"] = "time_sync"
    table["write/file_transport"] = "file_write"
    table["open_file/write"] = "file_write"
    table["unknown-<n>"] = "other"
    table["invalid_fragment"] = "other"
    for entries in (_PRIMARY, _SECONDARY):
        for name, operation in entries.values():
            table["link_" + name] = operation
    table["link_unknown-<n>"] = "other"
    return table


OPERATIONS = _operations()

# -- per-flow state -------------------------------------------------------------------------------


class _Assembly:
    """An application fragment being put back together from transport segments."""

    __slots__ = ("parts", "size", "next", "segments", "crc_errors", "anomalies")

    def __init__(self, part: bytes, seq: int, crc_errors: int, anomalies: list[str]) -> None:
        self.parts = [part]
        self.size = len(part)
        self.next = (seq + 1) & 0x3F
        self.segments = 1
        self.crc_errors = crc_errors
        self.anomalies = anomalies


@lru_cache(maxsize=4096)
def _unit(address: int) -> str:
    """A link address as ``ics.unit`` text."""
    return str(address)


def _flag(ev: Event, reason: str) -> None:
    anomalies = ev.get("dnp3.anomaly")
    if anomalies is None:
        ev["dnp3.anomaly"] = [reason]
    elif reason not in anomalies:
        anomalies.append(reason)


class Dnp3Session(FramedSession):
    """Per-flow state: framing (:class:`~sensor.framing.FramedSession`), transport reassembly,
    outstanding requests, selects."""

    __slots__ = ("_junk", "_bad", "_confirmed", "_asm", "_discard", "_pending", "_continuing", "_selects",
                 "_unanswered", "max_outstanding", "timeout", "max_points")

    frame_name = "dnp3 frame"
    max_resync = MAX_BUFFER

    def __init__(self, max_outstanding: int = MAX_OUTSTANDING, timeout: float = PAIR_TIMEOUT,
                 max_points: int = MAX_POINTS) -> None:
        super().__init__({"frames": 0, "fragments": 0, "link_frames": 0, "anomalies": 0, "crc_errors": 0,
                          "header_crc_errors": 0, "segments": 0, "segments_discarded": 0, "duplicate_segments": 0,
                          "fragments_abandoned": 0, "fragments_incomplete": 0, "objects": 0, "points": 0,
                          "points_omitted": 0, "junk_bytes": 0, "paired": 0, "unpaired_responses": 0,
                          "requests_dropped": 0, "requests_timed_out": 0, "requests_unanswered": 0})
        self._junk = [0, 0]  # octets without a start pair since the last frame
        self._bad = 0  # frames in a row with a bad header CRC
        self._confirmed = False  # one frame with a good header CRC seen: the flow is DNP3
        self._asm: dict[int, _Assembly] = {}  # (direction, source, destination) -> fragment in progress
        self._discard: set[int] = set()  # keys whose segments are dropped until the next first segment
        self._pending: dict[int, tuple[float, Event]] = {}  # (outstation, master, seq) -> (time, request)
        self._continuing: dict[int, tuple[float, Event]] = {}  # (outstation, master) -> multi-fragment response
        self._selects: dict[int, tuple[int, bytes, float]] = {}  # (outstation, master) -> (seq, objects, time)
        self._unanswered: dict[int, int] = {}  # (outstation, master) -> requests in a row without response
        self.max_outstanding = max_outstanding
        self.timeout = timeout
        self.max_points = max_points

    # -- the Session protocol (feed and on_gap come from FramedSession) ---------------------------

    def finish(self, ts: float) -> list[Event]:
        """Every fragment was reported when it arrived; unanswered requests and unfinished
        fragments are counted (``requests_unanswered``, ``fragments_incomplete``)."""
        self.stats["requests_unanswered"] += len(self._pending)
        self.stats["fragments_incomplete"] += len(self._asm)
        self._pending.clear()
        self._asm.clear()
        self._continuing.clear()
        self._selects.clear()
        return []

    # -- framing ----------------------------------------------------------------------------------

    def _after_gap(self, d: int) -> None:
        """Lost octets: this direction's junk count and fragments in progress go."""
        self._junk[d] = 0
        for key in [k for k in self._asm if k >> 32 == d]:
            del self._asm[key]
            self.stats["fragments_incomplete"] += 1

    def _find_frame(self, data: bytes, d: int) -> bytes:
        """After a gap: drop octets up to a frame header whose CRC is good (waiting while it is cut)."""
        n = len(data)
        i = data.find(_START)
        while 0 <= i:
            if i + 10 > n:
                return self._skip(data, d, i, found=False)
            if data[i + 2] >= 5 and _header_ok(data, i):
                return self._skip(data, d, i, found=True)
            i = data.find(_START, i + 1)
        return self._skip(data, d, n - 1 if n and data[-1] == 0x05 else n, found=False)

    def _frames(self, data: bytes, d: int, to_server: bool, ts: float, events: list[Event]) -> int:
        """Turn every whole frame of ``data`` into events; return the octets consumed."""
        n = len(data)
        off = 0
        stats = self.stats
        header = _HEADER.unpack_from
        table = _CRC2
        while n - off >= 10:
            start, w1, dst, src, crc = header(data, off)
            if start != 0x6405:  # the octets 05 64
                off = self._junk_run(data, off, d)
                continue
            if table[table[table[table[start] ^ w1] ^ dst] ^ src] ^ 0xFFFF != crc:
                if not self._confirmed:
                    raise ProtocolViolation("link header crc error", self._pos[d] + off + 8)
                if self._junk[d]:  # a start pair inside junk with a bad header is junk too
                    off = self._junk_run(data, off + 1, d, 1)
                    continue
                # where a frame should start: report the broken header; its length cannot be trusted,
                # so what follows it is junk up to the next good header
                self._bad += 1
                stats["frames"] += 1
                stats["header_crc_errors"] += 1
                if self._bad > MAX_BAD_FRAMES:
                    raise ProtocolViolation(f"{MAX_BAD_FRAMES} frames in a row with a bad header crc",
                                            self._pos[d] + off)
                ev = self._link_event((w1 & 0xFF, w1 >> 8, dst, src), "header-crc-error")
                off += 10
            else:
                length = w1 & 0xFF
                if length < 5:
                    size = 10
                else:
                    user = length - 5
                    size = 10 + user + ((user + 15) >> 4 << 1)  # header, CRC per 16 octets of user data
                if off + size > n:
                    break
                stats["frames"] += 1
                ev = self._frame(data, off, length, w1 >> 8, dst, src, d, to_server, ts)
                off += size
            if ev is not None:
                junk = self._junk[d]
                if junk:
                    ev["dnp3.junk_bytes"] = junk
                    _flag(ev, "junk-before-frame")
                    self._junk[d] = 0
                if "dnp3.anomaly" in ev:
                    ev["event.type"] = _ERROR_TYPE
                    stats["anomalies"] += 1
                events.append(ev)
        return off

    def _junk_run(self, data: bytes, off: int, d: int, skipped: int = 0) -> int:
        """Skip octets up to the next start pair (``skipped`` octets before ``off`` are junk too);
        before the first frame the flow is not DNP3."""
        if not self._confirmed:
            raise ProtocolViolation("no dnp3 start octets 0x0564", self._pos[d] + off)
        nxt = data.find(_START, off)
        if nxt < 0:
            nxt = len(data) - 1 if data[-1] == 0x05 else len(data)
        skipped += nxt - off
        self._junk[d] += skipped
        self.stats["junk_bytes"] += skipped
        if self._junk[d] > MAX_JUNK:
            raise ProtocolViolation(f"no dnp3 start octets within {MAX_JUNK} bytes", self._pos[d] + nxt)
        return nxt

    def _frame(self, data: bytes, off: int, length: int, ctl: int, dst: int, src: int, d: int, to_server: bool,
               ts: float) -> Event | None:
        """One whole link frame at ``off`` whose header CRC is good: a link event, a fragment's event, or
        None (a segment kept)."""
        link = (length, ctl, dst, src)
        self._bad = 0
        self._confirmed = True
        if length < 5:
            return self._link_event(link, "length-too-small")
        user = length - 5
        fn = ctl & 0x0F
        if not ctl & 0x40 or (fn != 4 and fn != 3):
            return self._link_event(link, "unexpected-user-data" if user else None)
        if not user:
            return self._link_event(link, "no-user-data")
        # the user data, CRC checked block by block
        s = off + 10
        bad = 0
        if user <= 16:
            payload = data[s:s + user]
            crc = 0
            table = _CRC2
            for word in _WORDS[user >> 1].unpack_from(data, s):
                crc = table[crc ^ word]
            end = s + user
            if user & 1:
                crc = (crc >> 8) ^ _CRC1[(crc ^ data[end - 1]) & 0xFF]
            if crc ^ 0xFFFF != data[end] | data[end + 1] << 8:
                bad = 1
        else:
            parts = []
            left = user
            table = _CRC2
            block = _BLOCK.unpack_from
            while left >= 16:  # full blocks: eight words and the CRC, unrolled
                w0, w1, w2, w3, w4, w5, w6, w7, crc = block(data, s)
                if table[table[table[table[table[table[table[table[w0] ^ w1] ^ w2] ^ w3] ^ w4] ^ w5] ^ w6] ^ w7] \
                        ^ 0xFFFF != crc:
                    bad += 1
                parts.append(data[s:s + 16])
                s += 18
                left -= 16
            if left:
                parts.append(data[s:s + left])
                if not _crc_ok(data, s, left):
                    bad += 1
            payload = b"".join(parts)
        th = payload[0]
        if th >= 0xC0 and not bad and not self._asm:  # the usual: a whole fragment in one frame, nothing pending
            self.stats["segments"] += 1
            if self._discard:
                self._discard.discard(d << 32 | src << 16 | dst)
            return self._fragment(payload, 1, link, th, 1, 0, None, to_server, ts)
        if bad:
            self.stats["crc_errors"] += bad
        return self._segment(payload, bad, link, d, to_server, ts)

    def _link_event(self, link: tuple[int, int, int, int], reason: str | None) -> Event:
        """An event for a link frame that carries no (usable) application data."""
        length, ctl, dst, src = link
        name, action, operation, known = _LINK[ctl]
        primary = ctl & 0x40 != 0
        ev: Event = {"dnp3.link.length": length, "dnp3.link.control": ctl, "dnp3.link.function_code": ctl & 0x0F,
                     "dnp3.link.function": name, "dnp3.link.dir": ctl >= 0x80, "dnp3.link.primary": primary,
                     "dnp3.link.destination": dst, "dnp3.link.source": src, "event.action": action,
                     "ics.function": action, "ics.operation": operation,
                     "ics.role": REQUEST if primary else RESPONSE,
                     "ics.unit": _unit(dst if ctl >= 0x80 else src)}
        if not primary:
            failed = name in ("nack", "not_supported", "not_functioning")
            ev["ics.status"] = name if failed else "ok"
            ev["event.outcome"] = "failure" if failed else "success"
        self.stats["link_frames"] += 1
        if reason is not None:
            ev["dnp3.anomaly"] = [reason]
        if not known:
            _flag(ev, "unknown-link-function")
        return ev

    # -- transport layer --------------------------------------------------------------------------

    def _segment(self, payload: bytes, bad: int, link: tuple[int, int, int, int], d: int, to_server: bool,
                 ts: float) -> Event | None:
        th = payload[0]
        seq = th & 0x3F
        key = d << 32 | link[3] << 16 | link[2]
        stats = self.stats
        stats["segments"] += 1
        assemblies = self._asm
        asm = assemblies.get(key)
        if th & 0x40:  # FIR: a new fragment
            anomalies: list[str] = ["crc-error"] if bad else []
            if asm is not None:
                del assemblies[key]
                stats["fragments_abandoned"] += 1
                anomalies.append("transport-fragment-abandoned")
            if self._discard:
                self._discard.discard(key)
            if th & 0x80:
                return self._fragment(payload, 1, link, th, 1, bad, anomalies, to_server, ts)
            if len(assemblies) >= MAX_ASSEMBLIES:
                del assemblies[next(iter(assemblies))]
                stats["fragments_abandoned"] += 1
            assemblies[key] = _Assembly(payload[1:], seq, bad, anomalies)
            return None
        if asm is None:
            if key in self._discard:
                stats["segments_discarded"] += 1
                return None
            return self._transport_error(key, link, th, "transport-without-first-segment", bad)
        if seq != asm.next:
            if seq == (asm.next - 1) & 0x3F:
                stats["duplicate_segments"] += 1  # a repeated segment: already have it
                return None
            del assemblies[key]
            stats["fragments_incomplete"] += 1
            return self._transport_error(key, link, th, "transport-sequence-gap", bad)
        asm.parts.append(payload[1:])
        asm.size += len(payload) - 1
        asm.segments += 1
        asm.crc_errors += bad
        asm.next = (seq + 1) & 0x3F
        if asm.size > MAX_FRAGMENT:
            del assemblies[key]
            stats["fragments_incomplete"] += 1
            return self._transport_error(key, link, th, "fragment-too-long", 0)
        if th & 0x80:
            del assemblies[key]
            if bad and "crc-error" not in asm.anomalies:
                asm.anomalies.append("crc-error")
            return self._fragment(b"".join(asm.parts), 0, link, th, asm.segments, asm.crc_errors, asm.anomalies,
                                  to_server, ts)
        return None

    def _transport_error(self, key: int, link: tuple[int, int, int, int], th: int, reason: str, bad: int) -> Event:
        """A segment that cannot be used: one link event; the rest of its fragment is dropped quietly."""
        if len(self._discard) >= MAX_ASSEMBLIES:
            self._discard.clear()
        self._discard.add(key)
        ev = self._link_event(link, reason)
        ev["dnp3.transport.control"] = th
        ev["dnp3.transport.sequence"] = th & 0x3F
        if bad:
            ev["dnp3.link.crc_errors"] = bad
            _flag(ev, "crc-error")
        return ev

    # -- application layer ------------------------------------------------------------------------

    def _fragment(self, frag: bytes, o: int, link: tuple[int, int, int, int], th: int, segments: int, crc_errors: int,
                  anomalies: list[str] | None, to_server: bool, ts: float) -> Event:
        """A whole application fragment ``frag[o:]``: the event, pairing, checks."""
        length, ctl, dst, src = link
        stats = self.stats
        stats["fragments"] += 1
        n = len(frag)
        if n - o < 2:
            return self._short_fragment(frag, o, link, th, segments, crc_errors, anomalies)
        ac = frag[o]
        fc = frag[o + 1]
        f = _FUNCTIONS[fc]
        name = f.name
        role = f.role
        master_side = role == REQUEST or fc == 0
        if master_side:
            outstation, master = dst, src
        else:
            outstation, master = src, dst
        ev: Event = {"dnp3.link.length": length, "dnp3.link.control": ctl, "dnp3.link.function": _LINK[ctl][0],
                     "dnp3.link.dir": ctl >= 0x80, "dnp3.link.destination": dst, "dnp3.link.source": src,
                     "dnp3.transport.sequence": th & 0x3F, "dnp3.transport.segments": segments,
                     "dnp3.app.control": ac, "dnp3.app.fir": ac >= 0x80, "dnp3.app.fin": ac & 0x40 != 0,
                     "dnp3.app.con": ac & 0x20 != 0, "dnp3.app.uns": ac & 0x10 != 0, "dnp3.app.sequence": ac & 0x0F,
                     "dnp3.function_code": fc, "dnp3.function": name, "event.action": name, "ics.function": name,
                     "ics.operation": f.operation, "ics.role": role,
                     "ics.unit": _unit(outstation)}
        if crc_errors:
            ev["dnp3.link.crc_errors"] = crc_errors
        if anomalies:
            ev["dnp3.anomaly"] = list(anomalies)
        start = o + 2
        if fc >= 0x81 and f.known:  # responses carry the internal indications
            if n - start < 2:
                _flag(ev, "iin-truncated")
                start = n
            else:
                iin1 = frag[start]
                iin2 = frag[start + 1]
                ev["dnp3.iin"] = iin1 << 8 | iin2
                if iin1 or iin2:
                    ev["dnp3.iin_flags"] = list(_IIN1[iin1] + _IIN2[iin2])
                    if iin2 & 0xC0:
                        _flag(ev, "iin-reserved-bits")
                start += 2
        if not f.known:
            _flag(ev, "reserved-function-code")
        elif start < n:
            if n - start <= MAX_CACHED_OBJECTS:
                decoded = _short_objects(frag[start:], fc, self.max_points)
            else:
                decoded = _decode_objects(frag, start, n, f, self.max_points)
            fields, reasons, headers, recorded, omitted = decoded
            stats["objects"] += headers
            if recorded:
                stats["points"] += recorded
                if omitted:
                    stats["points_omitted"] += omitted
            ev.update(fields)
            for reason in reasons:
                _flag(ev, reason)
        # header checks (the usual headers pass the first test)
        if master_side:
            if ctl < 0x80 or (ac & 0xF0 != 0xC0 if fc else ac & 0x20):
                self._check_master(ctl, ac, fc, ev)
        elif ctl >= 0x80 or (ac & 0xD0 != 0xD0 if fc == 0x82 else ac & 0x10):
            self._check_outstation(ctl, ac, fc, f, ev)
        # pairing, status
        seq = ac & 0x0F
        if role == REQUEST:
            if f.known:
                self._request(f, outstation << 16 | master, seq, frag, o, dst, ts, ev)
            return ev
        if fc == 0x81:
            self._response(outstation << 16 | master, seq, ac, ts, ev)
        elif fc == 0x83:
            self._auth_response(outstation << 16 | master, seq, ts, ev)
        elif not fc:
            return ev
        if ev.get("dnp3.iin", 0) & 0x37 or "dnp3.control_status" in ev or "dnp3.auth.error" in ev \
                or "dnp3.file.status" in ev:
            self._status(ev)
        else:
            ev["ics.status"] = "ok"
            ev["event.outcome"] = "success"
        return ev

    @staticmethod
    def _check_master(ctl: int, ac: int, fc: int, ev: Event) -> None:
        if ctl < 0x80:
            _flag(ev, "direction-bit-mismatch")
        if fc:
            if ac & 0xC0 != 0xC0:
                _flag(ev, "request-not-single-fragment")
            if ac & 0x30:
                _flag(ev, "request-con-or-uns-set")
        elif ac & 0x20:
            _flag(ev, "confirm-with-con-set")

    @staticmethod
    def _check_outstation(ctl: int, ac: int, fc: int, f: _Function, ev: Event) -> None:
        if ctl >= 0x80:
            _flag(ev, "direction-bit-mismatch")
        if fc == 0x82:
            if not ac & 0x10:
                _flag(ev, "unsolicited-without-uns-bit")
            if ac & 0xC0 != 0xC0:
                _flag(ev, "unsolicited-not-single-fragment")
        elif ac & 0x10 and f.known:
            _flag(ev, "response-with-uns-bit")

    def _short_fragment(self, frag: bytes, o: int, link: tuple[int, int, int, int], th: int, segments: int,
                        crc_errors: int, anomalies: list[str] | None) -> Event:
        """A fragment too short for its application header (control and function code)."""
        length, ctl, dst, src = link
        ev: Event = {"dnp3.link.length": length, "dnp3.link.control": ctl, "dnp3.link.function": _LINK[ctl][0],
                     "dnp3.link.dir": ctl >= 0x80, "dnp3.link.destination": dst, "dnp3.link.source": src,
                     "dnp3.transport.sequence": th & 0x3F, "dnp3.transport.segments": segments,
                     "dnp3.fragment_size": len(frag) - o, "event.action": "invalid_fragment",
                     "ics.function": "invalid_fragment", "ics.operation": "other",
                     "ics.role": REQUEST if ctl >= 0x80 else RESPONSE, "ics.unit": _unit(dst if ctl >= 0x80 else src)}
        if len(frag) - o == 1:
            self._app_control(frag[o], ev)
        if crc_errors:
            ev["dnp3.link.crc_errors"] = crc_errors
        ev["dnp3.anomaly"] = [*(anomalies or ()), "fragment-too-short"]
        return ev

    @staticmethod
    def _app_control(ac: int, ev: Event) -> None:
        ev["dnp3.app.control"] = ac
        ev["dnp3.app.fir"] = ac >= 0x80
        ev["dnp3.app.fin"] = ac & 0x40 != 0
        ev["dnp3.app.con"] = ac & 0x20 != 0
        ev["dnp3.app.uns"] = ac & 0x10 != 0
        ev["dnp3.app.sequence"] = ac & 0x0F

    # -- pairing ----------------------------------------------------------------------------------

    def _request(self, f: _Function, pair: int, seq: int, frag: bytes, o: int, dst: int, ts: float,
                 ev: Event) -> None:
        fc = f.code
        if fc == 3:  # select: remember what was selected for the operate that must follow
            selects = self._selects
            if pair not in selects and len(selects) >= MAX_ASSEMBLIES:
                del selects[next(iter(selects))]
            selects[pair] = (seq, frag[o + 2:], ts)
        elif fc == 4:
            selected = self._selects.pop(pair, None)
            if (selected is None or selected[0] != (seq - 1) & 0x0F or selected[1] != frag[o + 2:]
                    or ts - selected[2] > self.timeout):
                _flag(ev, "operate-without-select")
        if not f.answered or dst >= 0xFFFD:  # no response expected: no-ack functions, broadcasts
            return
        key = pair << 4 | seq
        pending = self._pending
        if fc == 32 and key in pending and pending[key][1]["dnp3.function_code"] != 32:
            return  # the reply to a challenge of the pending request: the response answers that request
        counts = self._unanswered
        unanswered = counts.get(pair, 0) + 1
        if unanswered == MAX_UNANSWERED:
            _flag(ev, "request-flood")
        elif unanswered == 1 and len(counts) >= MAX_OUTSTANDING:
            counts.clear()  # as many outstations as requests: start counting again
        counts[pair] = unanswered
        if key in pending:
            del pending[key]  # a repeated sequence number: the newer request wins, and moves to the end
        elif pending:
            oldest = next(iter(pending))
            if ts - pending[oldest][0] > self.timeout:
                del pending[oldest]  # expire lazily, one per request, so the table tracks live ones
                self.stats["requests_timed_out"] += 1
            elif len(pending) >= self.max_outstanding:
                del pending[oldest]
                self.stats["requests_dropped"] += 1
        pending[key] = (ts, ev)

    def _response(self, pair: int, seq: int, ac: int, ts: float, ev: Event) -> None:
        """A solicited response: its first fragment pairs by sequence number, the others follow it."""
        if ac & 0x80:
            entry = self._pending.pop(pair << 4 | seq, None)
            self._continuing.pop(pair, None)
            if entry is not None and ts - entry[0] > self.timeout:
                self.stats["requests_timed_out"] += 1
                entry = None
            if entry is None:
                self.stats["unpaired_responses"] += 1
            else:
                self.stats["paired"] += 1
                if not ac & 0x40:
                    if len(self._continuing) >= MAX_ASSEMBLIES:
                        del self._continuing[next(iter(self._continuing))]
                    self._continuing[pair] = entry
        else:
            entry = self._continuing.get(pair)
            if entry is None:
                self.stats["unpaired_responses"] += 1
            elif ac & 0x40:
                del self._continuing[pair]
        if pair in self._unanswered:
            del self._unanswered[pair]
        if entry is not None:
            self._copy_request(entry, ts, ev)

    def _auth_response(self, pair: int, seq: int, ts: float, ev: Event) -> None:
        """An authentication response answers an authentication request, or challenges the pending
        request (which then still awaits its own response)."""
        key = pair << 4 | seq
        entry = self._pending.get(key)
        if entry is None:
            self.stats["unpaired_responses"] += 1
            return
        if entry[1]["dnp3.function_code"] == 32:
            del self._pending[key]
        self.stats["paired"] += 1
        self._unanswered.pop(pair, None)
        sent, req = entry
        ev["dnp3.request_function"] = req["dnp3.function"]
        ev["dnp3.request_time_ms"] = int(sent * 1000.0)
        ev["dnp3.response_time_ms"] = round((ts - sent) * 1000.0, 3)

    @staticmethod
    def _copy_request(entry: tuple[float, Event], ts: float, ev: Event) -> None:
        sent, req = entry
        ev["dnp3.request_function"] = req["dnp3.function"]
        ev["ics.operation"] = req["ics.operation"]
        ev["dnp3.request_time_ms"] = int(sent * 1000.0)
        ev["dnp3.response_time_ms"] = round((ts - sent) * 1000.0, 3)
        if "ics.address_start" not in ev and "ics.address_start" in req:
            ev["ics.address_start"] = req["ics.address_start"]
            ev["ics.address_count"] = req["ics.address_count"]
            if "ics.tag" in req:
                ev["ics.tag"] = req["ics.tag"]

    @staticmethod
    def _status(ev: Event) -> None:
        """ics.status of a response: an IIN2 failure, else the first failed control, else ok."""
        iin = ev.get("dnp3.iin", 0)
        status = "ok"
        if iin & 0x37:
            for bit, name in _IIN_FAILURES:
                if iin & bit:
                    status = name
                    break
        else:
            for code in ev.get("dnp3.control_status", ()):
                if code:
                    status = CONTROL_STATUS_NAMES[code]
                    break
            else:
                error = ev.get("dnp3.auth.error")
                if error is not None:
                    status = error
                elif "dnp3.file.status" in ev and ev["dnp3.file.status"] != "success":
                    status = ev["dnp3.file.status"]
        ev["ics.status"] = status
        ev["event.outcome"] = "success" if status == "ok" else "failure"

    # -- objects ----------------------------------------------------------------------------------

_Decoded = tuple[Event, tuple[str, ...], int, int, int]


@lru_cache(maxsize=1024)
def _range_points(object_type: str, start: int, count: int) -> tuple[list[int], list[str]]:
    """The indexes and tags of a start-stop range (integrity polls repeat the same ranges); shared."""
    span = list(range(start, start + count))
    return span, [f"{object_type}:{i}" for i in span]


def _operation_by_objects(fc: int, groups: list[int], out: Event) -> None:
    """Read of device attributes is identity, write of time is time_sync... (the `function/what` rows)."""
    if fc == 1:
        if all(g == 0 for g in groups):
            out["ics.operation"] = "identity"
        elif 70 in groups:
            out["ics.operation"] = "file_read"
    elif fc == 2:
        if 50 in groups:
            out["ics.operation"] = "time_sync"
        elif 70 in groups:
            out["ics.operation"] = "file_write"
    elif out.get("dnp3.file.mode") in ("write", "append"):
        out["ics.operation"] = "file_write"


def _decode_objects(buf: bytes, o: int, n: int, f: _Function, max_points: int) -> _Decoded:
    """Object headers and data of ``buf[o:n]``: the dnp3.* and ics.* fields they give, the anomalies
    found (in order), and the headers, recorded and omitted points (for the counters). A pure
    function of its arguments: short object lists are decoded once (:func:`_short_objects`)."""
    out: Event = {}
    headers: list[dict[str, Any]] = []
    types: list[str] = []
    groups: list[int] = []
    codes: list[int] = []
    quals: list[int] = []
    indexes: list[int] = []
    values: list[Any] = []
    tags: list[str] = []
    quality: set[str] = set()
    state: _State | None = None
    data = f.data
    fc = f.code
    reason: str | None = None
    soft: list[str] = []  # anomalies after which parsing goes on
    address_start = -1
    address_count = 0
    total = 0
    objects = _OBJECTS
    while o < n:
        if len(headers) >= MAX_HEADERS:
            reason = "too-many-objects"
            break
        if n - o < 3:
            if n - o == 2:  # group and variation without qualifier: report what is there
                g, v = buf[o], buf[o + 1]
                spec = objects.get(g << 8 | v) or _unknown_object(g, v)
                headers.append({"type": spec.type, "group": g, "variation": v, "name": spec.name})
                types.append(spec.type)
                groups.append(g)
                codes.append(spec.code)
            reason = "object-header-truncated"
            break
        g = buf[o]
        v = buf[o + 1]
        q = buf[o + 2]
        o += 3
        spec = objects.get(g << 8 | v)
        if spec is None:
            spec = _unknown_object(g, v)
        prefix = q >> 4 & 0x07
        rc = q & 0x0F
        h: dict[str, Any] = {"type": spec.type, "group": g, "variation": v, "name": spec.name, "qualifier": q,
                             "prefix_code": prefix, "range_code": rc}
        headers.append(h)
        types.append(spec.type)
        groups.append(g)
        codes.append(spec.code)
        quals.append(q)
        if prefix == 7:  # reserved: the layout of what follows is unknown
            reason = "invalid-qualifier"
            break
        # the range field
        start = -1
        if rc == 6:
            count = 0
        elif rc <= 5:
            width = _WIDTHS[rc]
            if n - o < (width << 1 if rc <= 2 else width):
                reason = "object-header-truncated"
                break
            first = buf[o] if width == 1 else _read(buf, o, width)
            if rc <= 2:
                last = buf[o + 1] if width == 1 else _read(buf, o + width, width)
                o += width << 1
                h["start"] = first
                h["stop"] = last
                count = last - first + 1
                if count <= 0:
                    h["count"] = 0
                    if count < 0:  # stop before start: nothing sensible follows
                        reason = "invalid-range"
                        break
                    soft.append("invalid-range")  # stop = start - 1: no points, the next header follows
                    continue
            else:
                o += width
                h["address"] = first
                count = 1
            start = first
        elif 7 <= rc <= 9 or rc == 11:
            width = _WIDTHS[rc]
            if n - o < width:
                reason = "object-header-truncated"
                break
            count = buf[o] if width == 1 else _read(buf, o, width)
            o += width
            h["quantity"] = count
        else:  # reserved range code: no range field, no objects; the next header follows
            count = 0
            soft.append("invalid-qualifier")
        h["count"] = count
        total += count
        if q & 0x80 or (rc == 11 and prefix < 4) or (rc == 6 and prefix):
            soft.append("invalid-qualifier")
        if not spec.known:
            if not count or (not data and not prefix):
                soft.append("unknown-object")
                continue  # nothing to skip: the following headers can still be read
            reason = "unknown-object"
            break
        if spec.undefined:
            soft.append("unknown-object")
        if not count:
            continue
        if address_start < 0 and (start >= 0 or 1 <= prefix <= 3):
            address_start = start if start >= 0 else -2  # -2: the first index prefix, set below
            address_count = count
        # the objects (or, in requests without data, the ranges and index prefixes only)
        carries = (data and spec.kind != K_NONE) or prefix >= 4 or ((fc == 11 or fc == 12) and spec.code == 0x3202)
        if state is None:
            state = _State(max_points)
        mark = len(indexes)
        o, reason = state.points(buf, o, n, spec, h, count, prefix, start, carries, indexes, values, tags,
                                 quality, out)
        if address_start == -2 and len(indexes) > mark:
            address_start = indexes[mark]
        if reason is not None:
            break
    if o < n and reason is None:
        reason = "trailing-octets"
    if headers:
        out["dnp3.objects"] = headers
        out["dnp3.object_count"] = len(headers)
        out["dnp3.object_type"] = types
        out["dnp3.group"] = groups
        out["dnp3.object_code"] = codes
        if quals:
            out["dnp3.qualifier"] = quals
            out["dnp3.prefix_code"] = [q >> 4 & 7 for q in quals]
            out["dnp3.range_code"] = [q & 15 for q in quals]
        if fc == 1 or fc == 2 or fc == 25:
            _operation_by_objects(fc, groups, out)
        out["dnp3.points"] = total
    if indexes:
        out["dnp3.index"] = indexes
    if values:
        out["ics.values"] = values
    if tags:
        out["ics.tag"] = tags
    if quality:
        out["dnp3.quality"] = sorted(quality)
    if address_start >= 0:
        out["ics.address_start"] = address_start
        out["ics.address_count"] = address_count
    recorded = omitted = 0
    if state is not None:
        recorded, omitted = state.recorded, state.omitted
        if omitted:
            out["dnp3.points_omitted"] = omitted
        soft += state.reasons
    if reason is not None:
        soft.append(reason)
    return out, tuple(soft), len(headers), recorded, omitted


@lru_cache(maxsize=MAX_CACHED)
def _short_objects(objects: bytes, fc: int, max_points: int) -> _Decoded:
    """Polling repeats the same short object lists (class reads, CROBs and their echoes, null event
    reports): each distinct one is decoded once. The events share the lists it returns."""
    return _decode_objects(objects, 0, len(objects), _FUNCTIONS[fc], max_points)





_WIDTHS = (1, 2, 4, 1, 2, 4, 0, 1, 2, 4, 0, 1, 0, 0, 0, 0)  # octets of the range field per range code
_PREFIX_WIDTHS = (0, 1, 2, 4, 1, 2, 4, 0)


def _read(buf: bytes, o: int, width: int) -> int:
    if width == 1:
        return buf[o]
    if width == 2:
        return buf[o] | buf[o + 1] << 8
    return _U32.unpack_from(buf, o)[0]


_BITS1 = tuple(tuple((b >> i) & 1 for i in range(8)) for b in range(256))
_BIT7 = tuple(b >> 7 for b in range(256))  # a binary point's state in its flags
_DOUBLE = tuple(b >> 6 for b in range(256))  # a double-bit point's state in its flags
_LOW7 = tuple(b & 0x7F for b in range(256))  # a control status
_LOW4 = tuple(b & 0x0F for b in range(256))  # a CROB operation type
_BITS2 = tuple(tuple((b >> (2 * i)) & 3 for i in range(4)) for b in range(256))


class _State:
    """Point decoding for one fragment: the cap on recorded points and the flat crob/file fields."""

    __slots__ = ("room", "recorded", "omitted", "reasons", "first_time", "cto")

    def __init__(self, max_points: int) -> None:
        self.room = max_points
        self.recorded = 0
        self.omitted = 0
        self.reasons: list[str] = []
        self.first_time = False
        self.cto = -1  # the last common time of occurrence (g51), milliseconds

    def points(self, buf: bytes, o: int, n: int, spec: _Obj, h: dict[str, Any], count: int, prefix: int, start: int,
               carries: bool, indexes: list[int], values: list[Any], tags: list[str], quality: set[str],
               ev: Event) -> tuple[int, str | None]:
        """Decode ``count`` objects of one header from ``o``; return the new offset and a stop reason."""
        pw = _PREFIX_WIDTHS[prefix]
        sized = prefix >= 4  # each object is preceded by its size, not its index
        kind = spec.kind
        if not carries:
            if prefix == 0 or sized:
                if start >= 0:  # a range: its indexes are the points
                    self._range(spec, h, start, count, indexes, tags)
                return o, None
            # index prefixes without data (e.g. read of listed points)
            need = count * pw
            if n - o < need:
                return self._index_list(buf, o, (n - o) // pw, pw, spec, h, indexes, tags) + (n - o) % pw, \
                    "object-data-truncated"
            return self._index_list(buf, o, count, pw, spec, h, indexes, tags), None
        if kind == K_PACKED:
            if prefix:
                return o, "invalid-qualifier"
            octets = (count * spec.size + 7) >> 3
            if n - o < octets:  # the points whose bits are there
                self._packed(buf, o, ((n - o) << 3) // spec.size, spec, h, start, indexes, values, tags)
                return n, "object-data-truncated"
            self._packed(buf, o, count, spec, h, start, indexes, values, tags)
            return o + octets, None
        if kind == K_FIXED or kind == K_CROB:
            size = spec.size
            step = pw + size
            present = count
            reason = None
            if count * step > n - o:
                present = (n - o) // step
                reason = "object-data-truncated"
            if sized:
                return self._sized(buf, o, n, count, pw, spec, h, start, indexes, values, tags, quality, ev)
            o = self._fixed(buf, o, present, pw, spec, h, start, indexes, values, tags, quality, ev)
            if reason is not None:
                return n, reason
            return o, None
        if kind == K_VARIATION and not sized:
            size = spec.size
            if not size:  # variation 0 ("any length") has no length of its own: only for requests without data
                return o, "unknown-object-size"
            step = pw + size
            present = min(count, (n - o) // step)
            recs = []
            for k in range(present):
                index = _read(buf, o, pw) if pw else (start + k if start >= 0 else -1)
                rec: dict[str, Any] = {"data": _text(buf[o + pw:o + step])}
                if index >= 0:
                    rec["index"] = index
                recs.append(rec)
                o += step
            h["objects"] = recs
            self._indexes(spec, h, [r["index"] for r in recs if "index" in r], indexes, tags)
            if present < count:
                return n, "object-data-truncated"
            return o, None
        if kind == K_ATTRIBUTE and not sized:
            return self._attributes(buf, o, n, count, pw, spec, h, start, indexes, ev)
        if not sized and not (kind == K_VARSIZE and spec.size):  # only a few variable objects have a fixed size
            return o, "unknown-object-size"
        return self._sized(buf, o, n, count, pw, spec, h, start, indexes, values, tags, quality, ev)

    # -- the decoders ---------------------------------------------------------------------------------

    def _take(self, count: int) -> int:
        """How many of ``count`` points may still be recorded."""
        room = self.room
        if count <= room:
            self.room = room - count
            self.recorded += count
            return count
        self.room = 0
        self.recorded += room
        self.omitted += count - room
        return room

    def _range(self, spec: _Obj, h: dict[str, Any], start: int, count: int, indexes: list[int],
               tags: list[str]) -> None:
        taken = self._take(count)
        if not taken:
            return
        span, own_tags = _range_points(spec.type, start, taken)
        indexes.extend(span)
        tags.extend(own_tags)

    def _index_list(self, buf: bytes, o: int, count: int, pw: int, spec: _Obj, h: dict[str, Any],
                    indexes: list[int], tags: list[str]) -> int:
        found = [_read(buf, o + k * pw, pw) for k in range(count)]
        h["indexes"] = found
        self._indexes(spec, h, found, indexes, tags)
        return o + count * pw

    def _indexes(self, spec: _Obj, h: dict[str, Any], found: list[int], indexes: list[int], tags: list[str]) -> None:
        taken = self._take(len(found))
        if taken:
            prefix = spec.type + ":"
            kept = found[:taken]
            indexes.extend(kept)
            tags.extend([prefix + str(i) for i in kept])

    def _packed(self, buf: bytes, o: int, count: int, spec: _Obj, h: dict[str, Any], start: int, indexes: list[int],
                values: list[Any], tags: list[str]) -> None:
        if spec.size == 1:
            bits = [bit for b in buf[o:o + ((count + 7) >> 3)] for bit in _BITS1[b]]
        else:
            bits = [pair for b in buf[o:o + ((count + 3) >> 2)] for pair in _BITS2[b]]
        del bits[count:]
        taken = self._take(count)
        h["values"] = bits[:taken]
        if start >= 0:
            prefix = spec.type + ":"
            span = range(start, start + taken)
            h["indexes"] = list(span)
            indexes.extend(span)
            tags.extend([prefix + str(i) for i in span])
        if spec.numeric:
            values.extend(bits[:taken])

    def _fixed(self, buf: bytes, o: int, present: int, pw: int, spec: _Obj, h: dict[str, Any], start: int,
               indexes: list[int], values: list[Any], tags: list[str], quality: set[str], ev: Event) -> int:
        """Fixed-size objects, with or without an index prefix each: struct rows turned into columns."""
        step = pw + spec.size
        taken = self._take(present)
        if spec.kind == K_CROB:
            return self._crobs(buf, o, present, taken, pw, spec, h, start, indexes, tags, ev)
        end = o + present * step
        if not taken:
            return end
        cols = list(zip(*spec.rows(pw).iter_unpack(buf[o:o + taken * step])))
        if pw:
            own_index = list(cols[0])
            base = 1
            tags.extend(map((spec.type + ":").__add__, map(str, own_index)))
        else:
            base = 0
            if start >= 0:
                own_index, own_tags = _range_points(spec.type, start, taken)
                tags.extend(own_tags)
            else:
                own_index = list(range(taken))  # numbered by position: no point, no tag
        h["indexes"] = own_index
        indexes.extend(own_index)
        fpos = spec.flags
        flags: list[int] = []
        if fpos >= 0:
            h["flags"] = flags = list(cols[base + fpos])
            mask = spec.mask
            if mask:
                qnames = spec.quality
                for fl in set(flags):
                    if fl & mask != 1:
                        quality.update(qnames[fl & mask])
        vpos = spec.value
        if vpos >= 0:
            own_values = list(cols[base + vpos])
            if spec.floating:
                own_values = [v if math.isfinite(v) else str(v) for v in own_values]
                if spec.numeric:
                    values.extend([v for v in own_values if v.__class__ is not str])
            elif spec.numeric:
                values.extend(own_values)
            h["values"] = own_values
        elif vpos == V_BIT7 or vpos == V_DOUBLE:
            h["values"] = own_values = list(map((_BIT7 if vpos == V_BIT7 else _DOUBLE).__getitem__, flags))
            if spec.numeric:
                values.extend(own_values)
        tpos = spec.time
        if tpos >= 0:
            tpos += base
            times = list(map(_iso48, cols[tpos], cols[tpos + 1]))
            if spec.group == 51:  # common time of occurrence for the relative times that follow
                self.cto = cols[tpos][-1] | cols[tpos + 1][-1] << 32
        elif spec.rel >= 0:
            h["relative_ms"] = rels = list(cols[base + spec.rel])
            cto = self.cto
            times = [_iso(cto + rel) for rel in rels] if cto >= 0 else []
        else:
            times = []
        if times:
            h["times"] = times
            if not self.first_time:
                first = next((t for t in times if t is not None), None)
                if first is not None:
                    ev["dnp3.time"] = first
                    self.first_time = True
            if None in times:
                self.reasons.append("invalid-time")
        spos = spec.status
        if spos != S_NONE:
            statuses = list(map(_LOW7.__getitem__, cols[base + spos] if spos >= 0 else flags))
            h["status"] = statuses
            _extend(ev, "dnp3.control_status", statuses)
            _extend(ev, "dnp3.control_status_name", list(map(CONTROL_STATUS_NAMES.__getitem__, statuses)))
        return end

    def _crobs(self, buf: bytes, o: int, present: int, taken: int, pw: int, spec: _Obj, h: dict[str, Any],
               start: int, indexes: list[int], tags: list[str], ev: Event) -> int:
        """Control relay output blocks (and pattern control blocks): one dict each, flat lists too."""
        step = pw + 11
        end = o + present * step
        if not taken:
            return end
        cols = list(zip(*spec.rows(pw).iter_unpack(buf[o:o + taken * step])))
        if pw:
            found: list[int] = list(cols[0])
            cols = cols[1:]
        else:
            found = list(range(start, start + taken)) if start >= 0 else []
        codes, counts, ons, offs, statuses = cols
        statuses = tuple(map(_LOW7.__getitem__, statuses))
        ops = list(map(_LOW4.__getitem__, codes))
        tccs = [c >> 6 for c in codes]
        op_names = list(map(_OP_TYPES.__getitem__, ops))
        tcc_names = list(map(_TRIP_CLOSE.__getitem__, tccs))
        clears = [c & 0x20 != 0 for c in codes]
        status_names = list(map(CONTROL_STATUS_NAMES.__getitem__, statuses))
        controls = []
        for k in range(taken):
            code = codes[k]
            rec = {"code": code, "op_type": ops[k], "operation": op_names[k], "trip_close": tccs[k],
                   "trip_close_name": tcc_names[k], "queue": code & 0x10 != 0, "clear": clears[k], "count": counts[k],
                   "on_time": ons[k], "off_time": offs[k], "status": statuses[k], "status_name": status_names[k]}
            if found:
                rec["index"] = found[k]
            controls.append(rec)
        if max(ops) > 4 or 3 in tccs:
            self.reasons.append("invalid-control-code")
        h["controls"] = controls
        if found:
            h["indexes"] = found
            indexes.extend(found)
            tags.extend(map((spec.type + ":").__add__, map(str, found)))
        if "dnp3.crob.control_code" in ev:  # a second header of controls
            for name, items in (("dnp3.crob.control_code", codes), ("dnp3.crob.op_type", ops),
                                ("dnp3.crob.operation", op_names), ("dnp3.crob.trip_close", tccs),
                                ("dnp3.crob.trip_close_name", tcc_names), ("dnp3.crob.clear", clears),
                                ("dnp3.crob.count", counts), ("dnp3.crob.on_time", ons), ("dnp3.crob.off_time", offs)):
                ev[name].extend(items)
        else:
            ev["dnp3.crob.control_code"] = list(codes)
            ev["dnp3.crob.op_type"] = ops
            ev["dnp3.crob.operation"] = op_names
            ev["dnp3.crob.trip_close"] = tccs
            ev["dnp3.crob.trip_close_name"] = tcc_names
            ev["dnp3.crob.clear"] = clears
            ev["dnp3.crob.count"] = list(counts)
            ev["dnp3.crob.on_time"] = list(ons)
            ev["dnp3.crob.off_time"] = list(offs)
        _extend(ev, "dnp3.control_status", statuses)
        _extend(ev, "dnp3.control_status_name", status_names)
        return end

    def _sized(self, buf: bytes, o: int, n: int, count: int, pw: int, spec: _Obj, h: dict[str, Any], start: int,
               indexes: list[int], values: list[Any], tags: list[str], quality: set[str],
               ev: Event) -> tuple[int, str | None]:
        """Objects preceded by their size (prefix codes 4-6: file, authentication, data sets...), or of the
        fixed size a few variable-format objects have (g120v3, g120v4)."""
        recs: list[dict[str, Any]] = []
        group, variation = spec.group, spec.variation
        reason = None
        taken = self._take(count)
        for k in range(count):
            if n - o < pw:
                reason = "object-data-truncated"
                break
            size = _read(buf, o, pw) if pw else spec.size
            o += pw
            if n - o < size:
                reason = "object-data-truncated"
                o = n
                break
            if k < taken:
                rec: dict[str, Any] = {"index": start + k if start >= 0 else k, "size": size}
                if group == 70:
                    reason = _file_object(variation, buf, o, o + size, rec)
                elif group == 120:
                    reason = _auth_object(variation, buf, o, o + size, rec)
                elif spec.kind == K_FIXED and size >= spec.size:
                    rec["value"] = spec.st.unpack_from(buf, o)[0]  # type: ignore[union-attr]
                recs.append(rec)
                if reason is not None:
                    self.reasons.append(reason)
                    reason = None
            o += size
        if recs:
            h["objects"] = recs
            first = recs[0]
            if group == 70:
                for key, name in (("filename", "dnp3.file.name"), ("file_handle", "dnp3.file.handle"),
                                  ("file_size", "dnp3.file.size"), ("operational_mode", "dnp3.file.mode"),
                                  ("status", "dnp3.file.status"), ("block_number", "dnp3.file.block"),
                                  ("last_block", "dnp3.file.last_block"), ("request_id", "dnp3.file.request_id"),
                                  ("username", "dnp3.file.username")):
                    if key in first and name not in ev:
                        ev[name] = first[key]
            elif group == 120:
                for key, name in (("sequence", "dnp3.auth.sequence"), ("user", "dnp3.auth.user"),
                                  ("error", "dnp3.auth.error"), ("key_status", "dnp3.auth.key_status")):
                    if key in first and name not in ev:
                        ev[name] = first[key]
                if variation == 3:
                    ev["dnp3.auth.aggressive_mode"] = True
        return o, reason

    def _attributes(self, buf: bytes, o: int, n: int, count: int, pw: int, spec: _Obj, h: dict[str, Any],
                    start: int, indexes: list[int], ev: Event) -> tuple[int, str | None]:
        """Device attributes (group 0): data type code, length (none for type 0), value per object."""
        recs = []
        found = []
        reason = None
        for k in range(count):
            if n - o < pw + 1:
                reason = "object-data-truncated"
                o = n
                break
            index = _read(buf, o, pw) if pw else (start + k if start >= 0 else k)
            o += pw
            dtype = buf[o]
            if dtype == 0:  # a placeholder without length or value
                recs.append({"index": index, "data_type": "none", "length": 0})
                found.append(index)
                o += 1
                continue
            if n - o < 2 or n - o - 2 < buf[o + 1]:
                reason = "object-data-truncated"
                o = n
                break
            length = buf[o + 1]
            o += 2
            rec: dict[str, Any] = {"index": index, "data_type": dtype, "length": length}
            _attribute(spec.variation, buf, o, o + length, rec)
            rec["data_type"] = _ATTR_TYPES.get(dtype, f"unknown-{dtype}")
            recs.append(rec)
            found.append(index)
            o += length
        if recs:
            h["attributes"] = recs
            kept = found[:self._take(len(found))]
            h["indexes"] = kept
            indexes.extend(kept)
            field = _IDENTITY.get(spec.variation)
            if field is not None and isinstance(recs[0].get("value"), str):
                ev[field] = recs[0]["value"]
        return o, reason


def _extend(ev: Event, key: str, items: Any) -> None:
    current = ev.get(key)
    if current is None:
        ev[key] = list(items)  # a list of its own: the header keeps ``items``
    else:
        current.extend(items)


# -- detection ------------------------------------------------------------------------------------


def probe(payload: bytes, to_server: bool) -> bool:
    """The first payload starts with a link header (0x05 0x64, length 5..255) whose CRC is right.

    A 16-bit CRC over the first 8 octets after a 2-octet start pattern: random data and other
    protocols pass about once in four billion.
    """
    return (len(payload) >= 10 and payload[0] == 0x05 and payload[1] == 0x64 and payload[2] >= 5
            and _header_ok(payload, 0))


# -- registration ---------------------------------------------------------------------------------


def _fields() -> tuple[Field, ...]:
    F = Field
    return (
        F("dnp3.link.length", "short", "Link header LENGTH: octets of control, addresses and user data (5..255),"
          " CRCs not counted; of the frame that completed the fragment."),
        F("dnp3.link.control", "short", "Link header CONTROL octet (DIR, PRM, FCB/FCV or DFC, function code)."),
        F("dnp3.link.function_code", "short", "Link function code (CONTROL bits 0-3)."),
        F("dnp3.link.function", "keyword", "Link function: primary `reset_link_states`, `reset_user_process`,"
          " `test_link_states`, `confirmed_user_data`, `unconfirmed_user_data`, `request_link_status`;"
          " secondary `ack`, `nack`, `status`, `not_functioning`, `not_supported`; `unknown-<n>`."),
        F("dnp3.link.dir", "boolean", "DIR bit: the frame comes from the master."),
        F("dnp3.link.primary", "boolean", "PRM bit: primary (initiating) frame."),
        F("dnp3.link.destination", "integer", "Link destination address (0xFFFD-0xFFFF: broadcast)."),
        F("dnp3.link.source", "integer", "Link source address."),
        F("dnp3.link.crc_errors", "short", "User data blocks of this fragment (all its frames) whose CRC was wrong."),
        F("dnp3.transport.control", "short", "Transport header octet (FIN, FIR, sequence) of the last segment."),
        F("dnp3.transport.sequence", "short", "Transport sequence number (0..63) of the last segment."),
        F("dnp3.transport.segments", "short", "Transport segments (link frames) the fragment was reassembled from."),
        F("dnp3.app.control", "short", "Application control octet (FIR, FIN, CON, UNS, sequence)."),
        F("dnp3.app.fir", "boolean", "FIR: first fragment of a message."),
        F("dnp3.app.fin", "boolean", "FIN: last fragment of a message."),
        F("dnp3.app.con", "boolean", "CON: the sender asks for an application confirm."),
        F("dnp3.app.uns", "boolean", "UNS: unsolicited response, or the confirm of one."),
        F("dnp3.app.sequence", "short", "Application sequence number (0..15); pairs a response with its request."),
        F("dnp3.function_code", "short", "Application function code (0-33 requests, 129-131 responses)."),
        F("dnp3.function", "keyword", "Application function name in lower snake case (`read`, `select`,"
          " `direct_operate_nr`, `response`...), `unknown-<n>` for reserved codes."),
        F("dnp3.iin", "integer", "Internal indications of a response, IIN1 * 256 + IIN2 (as Wireshark and Zeek"
          " show them)."),
        F("dnp3.iin_flags", "keyword", "Set IIN bits: broadcast, class_1_events, class_2_events, class_3_events,"
          " need_time, local_control, device_trouble, device_restart, no_func_code_support, object_unknown,"
          " parameter_error, event_buffer_overflow, already_executing, config_corrupt, reserved_2, reserved_1.",
          array=True),
        F("dnp3.object_count", "short", "Object headers in the fragment (at most 256 are parsed)."),
        F("dnp3.objects", "object", "One entry per object header: `type` (`g30v1`), `group`, `variation`, `name`,"
          " `qualifier`, `prefix_code`, `range_code`, `start`/`stop` (range codes 0-2), `address` (3-5),"
          " `quantity` (7-9, 11), `count`, and as the object carries them `indexes`, `values`, `flags`, `times`,"
          " `relative_ms`, `status`, `controls` (CROBs), `objects` (sized objects: file, authentication,"
          " octet strings), `attributes` (device attributes); see sensor/protocols/dnp3.md.", array=True),
        F("dnp3.object_code", "integer", "Group * 256 + variation of each object header (Wireshark's dnp3.al.obj).",
          array=True),
        F("dnp3.object_type", "keyword", "Each object header as `g<group>v<variation>`.", array=True),
        F("dnp3.group", "short", "Object group of each header (1 binary input, 12 CROB, 30 analog input, 50 time,"
          " 60 class data, 70 file, 120 authentication...).", array=True),
        F("dnp3.qualifier", "short", "Qualifier octet of each header (prefix code * 16 + range code).", array=True),
        F("dnp3.prefix_code", "short", "Prefix code of each header's qualifier: 0 none, 1-3 index of 1/2/4 octets,"
          " 4-6 object size of 1/2/4 octets, 7 reserved.", array=True),
        F("dnp3.range_code", "short", "Range code of each header's qualifier: 0-2 start and stop of 1/2/4 octets,"
          " 3-5 single address, 6 no range (all points), 7-9 count of 1/2/4 octets, 11 count of variable-size"
          " objects.", array=True),
        F("dnp3.points", "long", "Points the object headers declare (sum of their counts)."),
        F("dnp3.index", "long", "Point indexes of the recorded points, all headers (at most 2048).", array=True),
        F("dnp3.points_omitted", "long", "Points beyond the 2048 recorded."),
        F("dnp3.quality", "keyword", "Abnormal point flags found on any point: offline, restart, comm_lost,"
          " remote_forced, local_forced, chatter_filter, rollover, discontinuity, over_range, reference_err.",
          array=True),
        F("dnp3.time", "date", "First absolute time in the fragment (time objects g50/g51, event time stamps),"
          " the outstation's clock as sent."),
        F("dnp3.crob.control_code", "short", "Control code octet of each CROB (g12v1/g12v2).", array=True),
        F("dnp3.crob.op_type", "short", "Operation type of each CROB: 0 nul, 1 pulse on, 2 pulse off, 3 latch on,"
          " 4 latch off.", array=True),
        F("dnp3.crob.operation", "keyword", "Operation type name: nul, pulse_on, pulse_off, latch_on, latch_off,"
          " unknown-<n>.", array=True),
        F("dnp3.crob.trip_close", "short", "Trip-close code of each CROB: 0 nul, 1 close, 2 trip, 3 reserved.",
          array=True),
        F("dnp3.crob.trip_close_name", "keyword", "Trip-close code name: nul, close, trip, reserved.", array=True),
        F("dnp3.crob.clear", "boolean", "Clear bit of each CROB.", array=True),
        F("dnp3.crob.count", "short", "Count of each CROB (times to repeat the operation).", array=True),
        F("dnp3.crob.on_time", "long", "On time of each CROB, milliseconds.", array=True),
        F("dnp3.crob.off_time", "long", "Off time of each CROB, milliseconds.", array=True),
        F("dnp3.control_status", "short", "Status code of each CROB, analog output block and command event"
          " (0 success).", array=True),
        F("dnp3.control_status_name", "keyword", "Status code names: success, timeout, no_select, format_error,"
          " not_supported, already_active, hardware_error, local, too_many_objs, not_authorized,"
          " automation_inhibit, processing_limited, out_of_range, downstream_local, already_complete, blocked,"
          " canceled, blocked_other_master, downstream_fail, non_participating, undefined.", array=True),
        F("dnp3.file.name", "keyword", "File name of the first file command, descriptor or specification (g70)."),
        F("dnp3.file.handle", "long", "File handle (g70v4, v5, v6)."),
        F("dnp3.file.size", "long", "File size (g70v3, v4, v7)."),
        F("dnp3.file.mode", "keyword", "Operational mode of an open: null, read, write, append."),
        F("dnp3.file.status", "keyword", "File command or transport status (g70v4, v6): success, permission_denied,"
          " invalid_mode, file_not_found, file_locked, too_many_open, invalid_handle, ..."),
        F("dnp3.file.block", "long", "Block number of a file transport object (g70v5, v6)."),
        F("dnp3.file.last_block", "boolean", "The file transport block is the last one."),
        F("dnp3.file.request_id", "integer", "Request identifier of a file command or descriptor."),
        F("dnp3.file.username", "keyword", "User name of a file authentication object (g70v2; the password is not"
          " kept)."),
        F("dnp3.auth.sequence", "long", "Secure authentication challenge or key change sequence number (g120)."),
        F("dnp3.auth.user", "integer", "Secure authentication user number (g120)."),
        F("dnp3.auth.error", "keyword", "Secure authentication error (g120v7): authentication_failed,"
          " aggressive_mode_not_supported, mac_algorithm_not_supported, authorization_failed, unknown_user..."),
        F("dnp3.auth.key_status", "keyword", "Session key status (g120v5): ok, not_init, comm_fail, auth_fail."),
        F("dnp3.auth.aggressive_mode", "boolean", "The request authenticates itself in aggressive mode (g120v3)."),
        F("dnp3.device.manufacturer", "keyword", "Device attribute g0v252: manufacturer's name."),
        F("dnp3.device.product", "keyword", "Device attribute g0v250: product name and model."),
        F("dnp3.device.software_version", "keyword", "Device attribute g0v242: software version."),
        F("dnp3.device.hardware_version", "keyword", "Device attribute g0v243: hardware version."),
        F("dnp3.device.serial_number", "keyword", "Device attribute g0v248: serial number."),
        F("dnp3.device.name", "keyword", "Device attribute g0v247: user-assigned device name."),
        F("dnp3.device.id", "keyword", "Device attribute g0v246: user-assigned ID code."),
        F("dnp3.device.location", "keyword", "Device attribute g0v245: user-assigned location."),
        F("dnp3.fragment_size", "short", "Octets of an application fragment too short for its header."),
        F("dnp3.junk_bytes", "integer", "Octets not starting a frame that were skipped before this one."),
        F("dnp3.request_function", "keyword", "Responses: function of the paired request."),
        F("dnp3.request_time_ms", "date", "Responses: capture time of the paired request (epoch milliseconds)."),
        F("dnp3.response_time_ms", "double", "Responses: milliseconds since the paired request."),
        F("dnp3.anomaly", "keyword", "Why the frame or fragment breaks the specification although it parses"
          " (every reason found): link (header-crc-error, crc-error, length-too-small, no-user-data,"
          " unexpected-user-data, unknown-link-function, junk-before-frame), transport"
          " (transport-without-first-segment, transport-sequence-gap, transport-fragment-abandoned,"
          " fragment-too-long), application (fragment-too-short, iin-truncated, iin-reserved-bits,"
          " reserved-function-code, direction-bit-mismatch, request-not-single-fragment, request-con-or-uns-set,"
          " confirm-with-con-set, unsolicited-without-uns-bit, unsolicited-not-single-fragment,"
          " response-with-uns-bit, operate-without-select, request-flood), objects (object-header-truncated,"
          " invalid-qualifier, invalid-range, unknown-object, unknown-object-size, object-data-truncated,"
          " trailing-octets, too-many-objects, invalid-control-code, invalid-time, file-name-out-of-bounds).",
          array=True),
    )


# Wireshark 4.0 decodes object headers for these application functions only (and IIN for 129 and 130):
# the differential compares the object fields where it does.
_WIRESHARK_OBJECTS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 21, 25, 26, 27, 129, 130})


def _wireshark_decodes_objects(ev: Event) -> bool:
    return ev.get("dnp3.function_code") in _WIRESHARK_OBJECTS


def _wireshark_decodes_iin(ev: Event) -> bool:
    return ev.get("dnp3.function_code") in (129, 130)


def port_probe(payload: bytes, to_server: bool) -> bool:
    """On port 20000: the start octets and a length of at least 5 (the header CRC is checked by the
    session, which reports a bad one as a decode error instead of ignoring the flow)."""
    return len(payload) >= 3 and payload[0] == 0x05 and payload[1] == 0x64 and payload[2] >= 5


DISSECTOR = Dissector(
    name="dnp3",
    description="DNP3 (IEEE 1815) over TCP and UDP. Responses (`response`) take the operation of the request they"
    " answer (`report` when unpaired); rows written `function/what` override the function's operation when the"
    " fragment carries those objects; link frames without application data are `link_<function>`.",
    tcp_ports=frozenset({20000}),
    udp_ports=frozenset({20000}),
    probe=probe,
    port_probe=port_probe,
    new_session=Dnp3Session,
    fields=_fields(),
    operations=OPERATIONS,
    routine_actions=frozenset({"confirm", "link_ack", "link_status", "link_request_link_status",
                               "link_test_link_states"}),
    wireshark=WiresharkFields(
        display_filter="dnp3.al.func || (dnp3 && !dnp3.tr.ctl)",
        fields={
            "dnp3.link.source": "dnp3.src",
            "dnp3.link.destination": "dnp3.dst",
            "dnp3.link.control": "dnp3.ctl",
            "dnp3.link.length": "dnp3.len",
            "dnp3.transport.sequence": "dnp3.tr.seq",
            "dnp3.app.control": "dnp3.al.ctl",
            "dnp3.function_code": "dnp3.al.func",
            "dnp3.iin": "dnp3.al.iin",
            "dnp3.object_code": "dnp3.al.obj",
            "dnp3.prefix_code": "dnp3.al.objq.prefix",
            "dnp3.range_code": "dnp3.al.objq.range",
            "dnp3.crob.op_type": "dnp3.ctl.op",
            "dnp3.crob.trip_close": "dnp3.ctl.trip",
            "dnp3.crob.count": "dnp3.al.count",
            "dnp3.crob.on_time": "dnp3.al.on_time",
            "dnp3.crob.off_time": "dnp3.al.off_time",
        },
        decode_as="dnp3",
        when={
            "dnp3.iin": _wireshark_decodes_iin,
            "dnp3.object_code": _wireshark_decodes_objects,
            "dnp3.prefix_code": _wireshark_decodes_objects,
            "dnp3.range_code": _wireshark_decodes_objects,
            "dnp3.crob.op_type": _wireshark_decodes_objects,
            "dnp3.crob.trip_close": _wireshark_decodes_objects,
            "dnp3.crob.count": _wireshark_decodes_objects,
            "dnp3.crob.on_time": _wireshark_decodes_objects,
            "dnp3.crob.off_time": _wireshark_decodes_objects,
        },
    ),
)
