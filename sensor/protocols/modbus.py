"""Modbus/TCP (MBAP framing, TCP port 502): one event per PDU.

Framing: every application data unit starts with the 7-byte MBAP header
(transaction id, protocol id = 0, length = bytes that follow incl. unit id,
unit id) and the one-byte function code. The session keeps a small buffer per
direction and cuts whole frames out of the in-order stream the core hands it;
the direction tells requests (client -> server) from responses.

Everything that depends on the function code is data, not code paths:
:data:`_FUNCTIONS` maps each public code to its name, its ``ics.operation``,
one small parser per direction (bound to the register table its tags name),
the PDU sizes it needs, and the request fields its response inherits.
Parsers fill fields into the event dict and return an anomaly reason (a stable
kebab-case code) or ``None``; the loop checks minimum PDU sizes before calling
them, so no parser ever indexes past the frame.

Three outcomes per frame, nothing else:

* a normal event;
* an *anomaly* event: the frame parses but breaks the specification
  (quantity out of range, byte count disagreeing with quantity or with the
  bytes present, PDU length wrong for the function). It carries the parsed
  fields, ``event.type: ["protocol", "error"]`` and ``modbus.anomaly``;
* :class:`~sensor.dissect.ProtocolViolation` when the bytes cannot be MBAP
  (protocol id not 0, length field < 2 or > 260).

Requests are remembered per flow by (transaction id, unit id) -- at most
:data:`MAX_OUTSTANDING`, each for :data:`PAIR_TIMEOUT` seconds -- so the
response event says which addresses its values belong to and how long the
server took to answer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from itertools import chain
from typing import Any

from sensor.dissect import Dissector, Event, ProtocolViolation, WiresharkFields
from sensor.framing import FramedSession
from sensor.schema import Field

__all__ = ["DISSECTOR", "ModbusSession", "probe", "MAX_OUTSTANDING", "PAIR_TIMEOUT", "MAX_BUFFER"]

MAX_OUTSTANDING = 1000
"""Requests awaiting a response per flow; beyond it the oldest is forgotten (counted)."""
PAIR_TIMEOUT = 60.0
"""Seconds after which an unanswered request no longer pairs with a response."""
MAX_BUFFER = 64 << 10
"""Bytes one direction may scan for a frame boundary after a gap before the flow is given up."""
MAX_LENGTH = 260
"""Largest MBAP length field still parsed (the specification allows 254; up to 260 is an anomaly)."""

# -- wire layouts (Modbus is big-endian) ------------------------------------------------------------

_MBAP = struct.Struct(">HHHBB")  # transaction id, protocol id, length, unit id, function code
_H = struct.Struct(">H")
_HH = struct.Struct(">HH")
_HHH = struct.Struct(">HHH")
_HHB = struct.Struct(">HHB")
_HHHHB = struct.Struct(">HHHHB")
_BHHH = struct.Struct(">BHHH")
_BBBBB = struct.Struct(">BBBBB")
_REGS = tuple(struct.Struct(f">{n}H") for n in range(130))  # n registers; a 260-byte frame holds 129
_BITS = tuple(tuple((byte >> i) & 1 for i in range(8)) for byte in range(256))  # LSB first

_ERROR_TYPE = ("protocol", "error")
_UNITS = tuple(str(u) for u in range(256))

MAX_VALUES_REGISTERS = 125
MAX_VALUES_BITS = 2000

Parser = Callable[[bytes, int, int, Event, "Event | None"], "str | None"]

# -- names -------------------------------------------------------------------------------------------

_EXCEPTIONS: dict[int, str] = {
    1: "illegal_function",
    2: "illegal_data_address",
    3: "illegal_data_value",
    4: "server_device_failure",
    5: "acknowledge",
    6: "server_device_busy",
    7: "negative_acknowledge",
    8: "memory_parity_error",
    10: "gateway_path_unavailable",
    11: "gateway_target_device_failed_to_respond",
}
EXCEPTION_NAMES = tuple(_EXCEPTIONS.get(code, f"unknown-{code}") for code in range(256))

# FC 8 sub-function -> (name, ics.operation)
_DIAGNOSTICS: dict[int, tuple[str, str]] = {
    0: ("return_query_data", "diagnostic"),
    1: ("restart_communications_option", "restart"),
    2: ("return_diagnostic_register", "diagnostic"),
    3: ("change_ascii_input_delimiter", "diagnostic"),
    4: ("force_listen_only_mode", "mode_change"),
    10: ("clear_counters_and_diagnostic_register", "diagnostic"),
    11: ("return_bus_message_count", "diagnostic"),
    12: ("return_bus_communication_error_count", "diagnostic"),
    13: ("return_bus_exception_error_count", "diagnostic"),
    14: ("return_server_message_count", "diagnostic"),
    15: ("return_server_no_response_count", "diagnostic"),
    16: ("return_server_nak_count", "diagnostic"),
    17: ("return_server_busy_count", "diagnostic"),
    18: ("return_bus_character_overrun_count", "diagnostic"),
    19: ("return_iop_overrun_count", "diagnostic"),
    20: ("clear_overrun_counter_and_flag", "diagnostic"),
    21: ("get_clear_modbus_plus_statistics", "diagnostic"),
}

# FC 43 MEI type -> (name, ics.operation)
_MEI: dict[int, tuple[str, str]] = {
    13: ("canopen_general_reference", "other"),
    14: ("read_device_identification", "identity"),
}

_DEVICE_OBJECTS: dict[int, str] = {
    0: "vendor_name",
    1: "product_code",
    2: "major_minor_revision",
    3: "vendor_url",
    4: "product_name",
    5: "model_name",
    6: "user_application_name",
}
_DEVICE_KEYS = tuple(f"modbus.device_id.{name}" for name in _DEVICE_OBJECTS.values())


def _text(raw: bytes) -> str:
    """Device strings as text; bytes outside printable ASCII escaped so nothing is lost or invented."""
    if raw.isascii():
        text = raw.decode("ascii")
        if text.isprintable():
            return text
    return raw.decode("latin-1").encode("unicode_escape").decode("ascii")


# -- per-function parsers ----------------------------------------------------------------------------
#
# Signature: parser(buf, off, end, ev, req) -> anomaly reason or None. ``off`` is the first byte
# after the function code, ``end`` the end of the frame; ``end - off`` is at least the minimum the
# function table declares. ``req`` is the paired request event (responses only, may be None).


def _read_request(limit: int, prefix: str) -> Parser:
    def parse(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
        address, quantity = _HH.unpack_from(buf, off)
        ev["modbus.address"] = ev["ics.address_start"] = address
        ev["modbus.quantity"] = ev["ics.address_count"] = quantity
        ev["ics.tag"] = [f"{prefix}:{address}"]
        if not 0 < quantity <= limit:
            return "quantity-out-of-range"
        return None
    return parse


def _read_bits_response(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    count = buf[off]
    ev["modbus.byte_count"] = count
    data = buf[off + 1:end]
    bits = list(chain.from_iterable(map(_BITS.__getitem__, data)))
    quantity = req.get("modbus.quantity") if req is not None else None
    reason = None
    if quantity is not None and 0 < quantity <= MAX_VALUES_BITS:
        if count != (quantity + 7) >> 3:
            reason = "byte-count-mismatch"
        del bits[quantity:]
    else:
        del bits[MAX_VALUES_BITS:]
    ev["modbus.values"] = ev["ics.values"] = bits
    if count != len(data):
        return "byte-count-mismatch"
    return reason


def _read_registers_response(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    count = buf[off]
    ev["modbus.byte_count"] = count
    present = end - off - 1
    ev["modbus.values"] = ev["ics.values"] = list(
        _REGS[min(present >> 1, MAX_VALUES_REGISTERS)].unpack_from(buf, off + 1))
    if count != present or present & 1:
        return "byte-count-mismatch"
    quantity = req.get("modbus.quantity") if req is not None else None
    if quantity is not None and quantity << 1 != count:
        return "byte-count-mismatch"
    return None


def _write_coil(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    address, value = _HH.unpack_from(buf, off)
    ev["modbus.address"] = ev["ics.address_start"] = address
    ev["modbus.quantity"] = ev["ics.address_count"] = 1
    ev["ics.tag"] = [f"coil:{address}"]
    if value == 0xFF00:
        ev["modbus.values"] = ev["ics.values"] = [1]
    elif value == 0:
        ev["modbus.values"] = ev["ics.values"] = [0]
    else:
        ev["modbus.values"] = ev["ics.values"] = [value]
        return "invalid-coil-value"
    return None


def _write_register(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    address, value = _HH.unpack_from(buf, off)
    ev["modbus.address"] = ev["ics.address_start"] = address
    ev["modbus.quantity"] = ev["ics.address_count"] = 1
    ev["ics.tag"] = [f"hr:{address}"]
    ev["modbus.values"] = ev["ics.values"] = [value]
    return None


def _write_multiple_request(bits: bool) -> Parser:
    limit = 1968 if bits else 123
    prefix = "coil" if bits else "hr"

    def parse(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
        address, quantity, count = _HHB.unpack_from(buf, off)
        ev["modbus.address"] = ev["ics.address_start"] = address
        ev["modbus.quantity"] = ev["ics.address_count"] = quantity
        ev["modbus.byte_count"] = count
        ev["ics.tag"] = [f"{prefix}:{address}"]
        start = off + 5
        present = end - start
        if bits:
            values = list(chain.from_iterable(map(_BITS.__getitem__, buf[start:end])))
            del values[min(quantity, MAX_VALUES_BITS):]
            expected = (quantity + 7) >> 3
        else:
            n = min(present >> 1, quantity, MAX_VALUES_REGISTERS)
            values = list(_REGS[n].unpack_from(buf, start))
            expected = quantity << 1
        ev["modbus.values"] = ev["ics.values"] = values
        if not 0 < quantity <= limit:
            return "quantity-out-of-range"
        if count != expected or count != present:
            return "byte-count-mismatch"
        return None
    return parse


def _address_echo(prefix: str) -> Parser:
    """Responses to FC 15/16: the starting address and quantity written."""
    def parse(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
        address, quantity = _HH.unpack_from(buf, off)
        ev["modbus.address"] = ev["ics.address_start"] = address
        ev["modbus.quantity"] = ev["ics.address_count"] = quantity
        ev["ics.tag"] = [f"{prefix}:{address}"]
        return None
    return parse


def _diagnostics(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    sub = _H.unpack_from(buf, off)[0]
    name, operation = _DIAGNOSTICS.get(sub) or (f"unknown-{sub}", "diagnostic")
    ev["modbus.subfunction_code"] = sub
    ev["modbus.subfunction"] = name
    ev["ics.operation"] = operation
    ev["modbus.diagnostic_data"] = buf[off + 2:end].hex()
    if end - off != 4 and sub != 0:  # only "return query data" echoes data of any length
        return "pdu-length-mismatch"
    return None


def _exception_status(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    ev["modbus.values"] = ev["ics.values"] = [buf[off]]
    return None


def _comm_event_counter(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    ev["modbus.values"] = ev["ics.values"] = list(_HH.unpack_from(buf, off))  # status, event count
    return None


def _comm_event_log(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    count, status, events, messages = _BHHH.unpack_from(buf, off)
    ev["modbus.byte_count"] = count
    ev["modbus.values"] = ev["ics.values"] = [status, events, messages]
    if count != end - off - 1 or count > 70:
        return "byte-count-mismatch"
    return None


def _server_id(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    count = buf[off]
    ev["modbus.byte_count"] = count
    ev["modbus.server_id"] = _text(buf[off + 1:end])
    if count != end - off - 1:
        return "byte-count-mismatch"
    return None


def _file_records(buf: bytes, off: int, end: int, ev: Event, with_data: bool) -> str | None:
    """Sub-requests of FC 20 (7 bytes each) and FC 21 (7 bytes + record data)."""
    count = buf[off]
    ev["modbus.byte_count"] = count
    records: list[dict[str, Any]] = []
    pos, stop = off + 1, end
    reason = None if count == end - off - 1 else "byte-count-mismatch"
    while pos + 7 <= stop:
        ref, file_number, record, length = _BHHH.unpack_from(buf, pos)
        pos += 7
        entry: dict[str, Any] = {"reference_type": ref, "file_number": file_number,
                                 "record_number": record, "record_length": length}
        if ref != 6:
            reason = reason or "invalid-reference-type"
        if with_data:
            n = min(length, (stop - pos) >> 1, MAX_VALUES_REGISTERS)
            entry["values"] = list(_REGS[n].unpack_from(buf, pos))
            if pos + 2 * length > stop:
                reason = reason or "byte-count-mismatch"
            pos += 2 * length
        records.append(entry)
    if pos != stop:
        reason = reason or "byte-count-mismatch"
    ev["modbus.file_records"] = records
    return reason


def _read_file_request(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    reason = _file_records(buf, off, end, ev, False)
    count = buf[off]
    if not 7 <= count <= 0xF5:
        return reason or "byte-count-mismatch"
    return reason


def _write_file(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    reason = _file_records(buf, off, end, ev, True)
    if not 9 <= buf[off] <= 0xFB:
        return reason or "byte-count-mismatch"
    return reason


def _read_file_response(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    """Sub-responses: length byte, reference type, data. Numbers come from the paired request."""
    count = buf[off]
    ev["modbus.byte_count"] = count
    asked: list[dict[str, Any]] = req.get("modbus.file_records", []) if req is not None else []
    records: list[dict[str, Any]] = []
    reason = None if count == end - off - 1 else "byte-count-mismatch"
    pos = off + 1
    while pos + 2 <= end:
        length, ref = buf[pos], buf[pos + 1]
        words = max(length - 1, 0) >> 1
        n = min(words, (end - pos - 2) >> 1, MAX_VALUES_REGISTERS)
        entry: dict[str, Any] = {"reference_type": ref, "record_length": words,
                                 "values": list(_REGS[n].unpack_from(buf, pos + 2))}
        if len(records) < len(asked):
            entry["file_number"] = asked[len(records)]["file_number"]
            entry["record_number"] = asked[len(records)]["record_number"]
        if ref != 6:
            reason = reason or "invalid-reference-type"
        if length < 1 or pos + 1 + length > end:
            reason = reason or "byte-count-mismatch"
        records.append(entry)
        pos += 1 + max(length, 1)
    ev["modbus.file_records"] = records
    return reason


def _mask_write(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    address, and_mask, or_mask = _HHH.unpack_from(buf, off)
    ev["modbus.address"] = ev["ics.address_start"] = address
    ev["modbus.quantity"] = ev["ics.address_count"] = 1
    ev["modbus.and_mask"] = and_mask
    ev["modbus.or_mask"] = or_mask
    ev["ics.tag"] = [f"hr:{address}"]
    return None


def _read_write_request(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    read_address, read_quantity, write_address, write_quantity, count = _HHHHB.unpack_from(buf, off)
    ev["modbus.read_address"] = read_address
    ev["modbus.read_quantity"] = read_quantity
    ev["modbus.write_address"] = ev["ics.address_start"] = write_address
    ev["modbus.write_quantity"] = ev["ics.address_count"] = write_quantity
    ev["modbus.byte_count"] = count
    ev["ics.tag"] = [f"hr:{write_address}"]
    start = off + 9
    present = end - start
    ev["modbus.values"] = ev["ics.values"] = list(
        _REGS[min(present >> 1, write_quantity, MAX_VALUES_REGISTERS)].unpack_from(buf, start))
    if not 0 < read_quantity <= 125 or not 0 < write_quantity <= 121:
        return "quantity-out-of-range"
    if count != write_quantity << 1 or count != present:
        return "byte-count-mismatch"
    return None


def _read_write_response(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    count = buf[off]
    ev["modbus.byte_count"] = count
    present = end - off - 1
    ev["modbus.values"] = ev["ics.values"] = list(
        _REGS[min(present >> 1, MAX_VALUES_REGISTERS)].unpack_from(buf, off + 1))
    if req is not None and "modbus.read_address" in req:
        # The values are the registers read: describe them, not the write part.
        ev["ics.address_start"] = req["modbus.read_address"]
        ev["ics.address_count"] = req["modbus.read_quantity"]
        ev["ics.tag"] = [f"hr:{req['modbus.read_address']}"]
        if req["modbus.read_quantity"] << 1 != count:
            return "byte-count-mismatch"
    if count != present or present & 1:
        return "byte-count-mismatch"
    return None


def _fifo_request(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    address = _H.unpack_from(buf, off)[0]
    ev["modbus.fifo_address"] = ev["modbus.address"] = ev["ics.address_start"] = address
    ev["ics.tag"] = [f"hr:{address}"]
    return None


def _fifo_response(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    count, fifo = _HH.unpack_from(buf, off)
    ev["modbus.byte_count"] = count
    ev["modbus.fifo_count"] = ev["ics.address_count"] = fifo
    present = end - off - 4
    ev["modbus.values"] = ev["ics.values"] = list(
        _REGS[min(present >> 1, fifo, MAX_VALUES_REGISTERS)].unpack_from(buf, off + 4))
    if fifo > 31:
        return "quantity-out-of-range"
    if count != 2 + 2 * fifo or count != end - off - 2:
        return "byte-count-mismatch"
    return None


def _mei(buf: bytes, off: int, end: int, ev: Event) -> int:
    mei = buf[off]
    name, operation = _MEI.get(mei) or (f"unknown-{mei}", "other")
    ev["modbus.subfunction_code"] = mei
    ev["modbus.subfunction"] = name
    ev["ics.operation"] = operation
    return mei


def _mei_request(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    if _mei(buf, off, end, ev) != 14:
        return None
    if end - off < 3:
        return "pdu-length-mismatch"
    ev["modbus.device_id.read_code"] = buf[off + 1]
    ev["modbus.device_id.object_id"] = buf[off + 2]
    if end - off != 3:
        return "pdu-length-mismatch"
    if not 1 <= buf[off + 1] <= 4:
        return "invalid-read-device-id-code"
    return None


def _mei_response(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    if _mei(buf, off, end, ev) != 14:
        return None
    if end - off < 7:
        return "pdu-length-mismatch"
    _, code, conformity, more, next_id = _BBBBB.unpack_from(buf, off)
    declared = buf[off + 5]
    ev["modbus.device_id.read_code"] = code
    ev["modbus.device_id.conformity_level"] = conformity
    ev["modbus.device_id.more_follows"] = more == 0xFF
    ev["modbus.device_id.next_object_id"] = next_id
    ev["modbus.device_id.object_count"] = declared
    others: dict[str, str] = {}
    pos, seen = off + 6, 0
    reason = None if more in (0, 0xFF) else "invalid-more-follows"
    while pos + 2 <= end:
        oid, length = buf[pos], buf[pos + 1]
        if pos + 2 + length > end:
            reason = reason or "pdu-length-mismatch"
        value = _text(buf[pos + 2:pos + 2 + length])
        if oid < 7:
            ev[_DEVICE_KEYS[oid]] = value
        else:
            others[f"object_{oid}"] = value
        pos += 2 + length
        seen += 1
    if others:
        ev["modbus.device_id.objects"] = others
    if seen != declared or pos != end:
        reason = reason or "pdu-length-mismatch"
    return reason


def _nothing(buf: bytes, off: int, end: int, ev: Event, req: Event | None) -> str | None:
    return None


# -- the function table ------------------------------------------------------------------------------


class _Function:
    """Everything the dissector knows about one function code."""

    __slots__ = ("code", "name", "operation", "request", "request_min", "request_exact", "response",
                 "response_min", "response_exact", "inherit", "known")

    def __init__(self, code: int, name: str, operation: str, request: Parser, request_min: int,
                 request_exact: bool, response: Parser, response_min: int, response_exact: bool,
                 inherit: tuple[str, ...] = (), known: bool = True) -> None:
        self.code = code
        self.name = name
        self.operation = operation
        self.request, self.request_min, self.request_exact = request, request_min, request_exact
        self.response, self.response_min, self.response_exact = response, response_min, response_exact
        self.inherit = inherit  # request fields a response lacks and takes from its request
        self.known = known


_ADDRESS = ("modbus.address", "modbus.quantity", "ics.address_start", "ics.address_count", "ics.tag")
_FIXED, _VAR = True, False

_PUBLIC = (
    # code, name, operation, request parser, min, exact, response parser, min, exact, inherited fields
    _Function(1, "read_coils", "read", _read_request(2000, "coil"), 4, _FIXED,
              _read_bits_response, 1, _VAR, _ADDRESS),
    _Function(2, "read_discrete_inputs", "read", _read_request(2000, "di"), 4, _FIXED,
              _read_bits_response, 1, _VAR, _ADDRESS),
    _Function(3, "read_holding_registers", "read", _read_request(125, "hr"), 4, _FIXED,
              _read_registers_response, 1, _VAR, _ADDRESS),
    _Function(4, "read_input_registers", "read", _read_request(125, "ir"), 4, _FIXED,
              _read_registers_response, 1, _VAR, _ADDRESS),
    _Function(5, "write_single_coil", "write", _write_coil, 4, _FIXED, _write_coil, 4, _FIXED),
    _Function(6, "write_single_register", "write", _write_register, 4, _FIXED, _write_register, 4, _FIXED),
    _Function(7, "read_exception_status", "diagnostic", _nothing, 0, _FIXED, _exception_status, 1, _FIXED),
    _Function(8, "diagnostics", "diagnostic", _diagnostics, 2, _VAR, _diagnostics, 2, _VAR),
    _Function(11, "get_comm_event_counter", "diagnostic", _nothing, 0, _FIXED,
              _comm_event_counter, 4, _FIXED),
    _Function(12, "get_comm_event_log", "diagnostic", _nothing, 0, _FIXED, _comm_event_log, 7, _VAR),
    _Function(15, "write_multiple_coils", "write", _write_multiple_request(True), 5, _VAR,
              _address_echo("coil"), 4, _FIXED, ("modbus.values", "ics.values")),
    _Function(16, "write_multiple_registers", "write", _write_multiple_request(False), 5, _VAR,
              _address_echo("hr"), 4, _FIXED, ("modbus.values", "ics.values")),
    _Function(17, "report_server_id", "identity", _nothing, 0, _FIXED, _server_id, 1, _VAR),
    _Function(20, "read_file_record", "file_read", _read_file_request, 1, _VAR, _read_file_response, 1, _VAR),
    _Function(21, "write_file_record", "file_write", _write_file, 1, _VAR, _write_file, 1, _VAR),
    _Function(22, "mask_write_register", "write", _mask_write, 6, _FIXED, _mask_write, 6, _FIXED),
    _Function(23, "read_write_multiple_registers", "write", _read_write_request, 9, _VAR,
              _read_write_response, 1, _VAR,
              ("modbus.read_address", "modbus.read_quantity", "modbus.write_address",
               "modbus.write_quantity")),
    _Function(24, "read_fifo_queue", "read", _fifo_request, 2, _FIXED, _fifo_response, 4, _VAR,
              ("modbus.fifo_address", "modbus.address", "ics.address_start", "ics.tag")),
    _Function(43, "encapsulated_interface_transport", "other", _mei_request, 1, _VAR,
              _mei_response, 1, _VAR, ("modbus.device_id.object_id",)),
)

_FUNCTIONS: tuple[_Function, ...] = tuple(
    next((f for f in _PUBLIC if f.code == code), None)
    or _Function(code, f"unknown-{code}", "other", _nothing, 0, _VAR, _nothing, 0, _VAR, known=False)
    for code in range(128)
)
"""Indexed by function code without the exception bit; codes outside the public set are `unknown-<n>`."""

def _operations() -> dict[str, str]:
    """Function name -> ics.operation; sub-functions that change the operation are listed as `fc/sub`."""
    table: dict[str, str] = {}
    for f in _PUBLIC:
        table[f.name] = f.operation
        subs = _DIAGNOSTICS if f.code == 8 else _MEI if f.code == 43 else {}
        for name, operation in subs.values():
            if operation != f.operation:
                table[f"{f.name}/{name}"] = operation
    table["unknown-<n>"] = "other"
    return table


OPERATIONS = _operations()

# -- the per-flow session ----------------------------------------------------------------------------


def _plausible(buf: bytes, i: int) -> bool:
    """An MBAP header with a public function code starts at ``i`` (needs 8 bytes)."""
    return (buf[i + 2] == 0 and buf[i + 3] == 0 and 2 <= ((buf[i + 4] << 8) | buf[i + 5]) <= 254
            and _FUNCTIONS[buf[i + 7] & 0x7F].known)


def _clean(buf: bytes, fc_at: int, end: int, request: bool) -> bool:
    """The PDU from the function code at ``fc_at`` to ``end`` parses without any anomaly."""
    fc = buf[fc_at]
    f = _FUNCTIONS[fc & 0x7F]
    pdu = fc_at + 1
    if fc & 0x80:
        return not request and end - pdu == 1 and buf[pdu] in _EXCEPTIONS
    parse, minimum, exact = ((f.request, f.request_min, f.request_exact) if request
                             else (f.response, f.response_min, f.response_exact))
    if end - pdu < minimum or (exact and end - pdu != minimum):
        return False
    return parse(buf, pdu, end, {}, None) is None


class ModbusSession(FramedSession):
    """Per-flow state: a buffer per direction, resync flags, outstanding requests."""

    __slots__ = ("_pending", "max_outstanding", "timeout")

    frame_name = "modbus frame"
    max_resync = MAX_BUFFER

    def __init__(self, max_outstanding: int = MAX_OUTSTANDING, timeout: float = PAIR_TIMEOUT) -> None:
        super().__init__({"pdus": 0, "anomalies": 0, "paired": 0, "unpaired_responses": 0,
                         "requests_dropped": 0, "requests_timed_out": 0, "function_mismatch": 0,
                         "gaps": 0, "resync_skipped_bytes": 0})
        self._pending: dict[int, tuple[float, Event]] = {}  # (tid << 8 | unit) -> (time, request event)
        self.max_outstanding = max_outstanding
        self.timeout = timeout

    def finish(self, ts: float) -> list[Event]:
        """Every request was reported when it arrived; nothing is held back."""
        self._pending.clear()
        return []

    # -- framing -------------------------------------------------------------------------------------

    def _find_frame(self, data: bytes, d: int) -> bytes:
        """After a gap: drop bytes up to the next plausible MBAP header, confirmed before it is trusted.

        A candidate is confirmed by a plausible header right after its frame, or, when its frame
        ends exactly where the data ends (segments usually end with a frame), by parsing cleanly
        as a PDU of this direction. While its frame or the following header is incomplete the
        decision waits for more bytes. Returns the data from the confirmed header on, or b"".
        """
        n = len(data)
        i = data.find(b"\x00\x00", 2) - 2
        while 0 <= i and i + 8 <= n:
            if _plausible(data, i):
                end = i + 6 + ((data[i + 4] << 8) | data[i + 5])
                if end + 8 <= n:
                    if _plausible(data, end):
                        return self._skip(data, d, i, found=True)
                elif end == n and _clean(data, i + 7, end, d == 0):
                    return self._skip(data, d, i, found=True)
                elif end >= n or data[end + 2:end + 4] in (b"\x00\x00", b"\x00", b""):
                    return self._skip(data, d, i, found=False)
            i = data.find(b"\x00\x00", i + 3) - 2
        return self._skip(data, d, max(n - 7, 0), found=False)

    def _frames(self, data: bytes, d: int, to_server: bool, ts: float, events: list[Event]) -> int:
        """Turn every whole frame of ``data`` into an event; return the bytes consumed."""
        unpack = _MBAP.unpack_from
        functions = _FUNCTIONS
        units = _UNITS
        append = events.append
        stats = self.stats
        n = len(data)
        off = 0
        reason: str | None
        while n - off >= 8:
            tid, proto, length, unit, fc = unpack(data, off)
            if proto != 0 or length < 2 or length > MAX_LENGTH:
                reason = ("protocol-id-not-zero" if proto != 0 else
                          "length-too-small" if length < 2 else "length-too-large")
                raise ProtocolViolation(reason, self._pos[d] + off)
            end = off + 6 + length
            if end > n:
                break
            f = functions[fc & 0x7F]
            name = f.name
            pdu = off + 8
            off = end
            if to_server:
                ev: Event = {"modbus.transaction_id": tid, "modbus.unit_id": unit, "modbus.function_code": fc,
                             "modbus.function": name, "event.action": name, "ics.function": name,
                             "ics.operation": f.operation, "ics.role": "request", "ics.unit": units[unit]}
                if fc & 0x80:
                    ev["modbus.function_code"] = fc & 0x7F
                    reason = "exception-in-request"
                elif end - pdu < f.request_min:
                    reason = "pdu-length-mismatch"
                else:
                    reason = f.request(data, pdu, end, ev, None)
                    if reason is None and f.request_exact and end - pdu != f.request_min:
                        reason = "pdu-length-mismatch"
                self._remember(tid << 8 | unit, ts, ev)
            else:
                ev = {"modbus.transaction_id": tid, "modbus.unit_id": unit, "modbus.function_code": fc & 0x7F,
                      "modbus.function": name, "event.action": name, "ics.function": name,
                      "ics.operation": f.operation, "ics.role": "response", "ics.unit": units[unit],
                      "ics.status": "ok", "event.outcome": "success"}
                req = self._pair(tid << 8 | unit, fc & 0x7F, ts, ev)
                if fc & 0x80:
                    reason = self._exception(data, pdu, end, ev)
                elif end - pdu < f.response_min:
                    reason = "pdu-length-mismatch"
                else:
                    reason = f.response(data, pdu, end, ev, req)
                    if reason is None and f.response_exact and end - pdu != f.response_min:
                        reason = "pdu-length-mismatch"
                if req is not None:
                    for key in f.inherit:
                        if key not in ev and key in req:
                            ev[key] = req[key]
                    if fc & 0x80:
                        _inherit_address(ev, req)
            if length > 254 and reason is None:
                reason = "length-too-large"
            if reason is not None:
                ev["event.type"] = _ERROR_TYPE
                ev["modbus.anomaly"] = reason
                stats["anomalies"] += 1
            append(ev)
        stats["pdus"] += len(events)
        return off

    # -- pairing -------------------------------------------------------------------------------------

    def _remember(self, key: int, ts: float, ev: Event) -> None:
        """Keep the request until its response; the table is in arrival order, oldest first."""
        pending = self._pending
        if key in pending:
            del pending[key]  # a reused id: the newer request wins, and moves to the end
        elif pending:
            oldest = next(iter(pending))
            if ts - pending[oldest][0] > self.timeout:
                del pending[oldest]  # expire lazily, one per request, so the table tracks live ones
                self.stats["requests_timed_out"] += 1
            elif len(pending) >= self.max_outstanding:
                del pending[oldest]
                self.stats["requests_dropped"] += 1
        pending[key] = (ts, ev)

    def _pair(self, key: int, code: int, ts: float, ev: Event) -> Event | None:
        entry = self._pending.pop(key, None)
        if entry is None:
            self.stats["unpaired_responses"] += 1
            return None
        sent, req = entry
        if ts - sent > self.timeout:
            self.stats["requests_timed_out"] += 1
            return None
        if req["modbus.function_code"] != code:
            self.stats["function_mismatch"] += 1
            return None
        self.stats["paired"] += 1
        ev["modbus.request_time_ms"] = int(sent * 1000.0)
        ev["modbus.response_time_ms"] = round((ts - sent) * 1000.0, 3)
        return req

    @staticmethod
    def _exception(buf: bytes, off: int, end: int, ev: Event) -> str | None:
        ev["event.outcome"] = "failure"
        if end - off < 1:
            ev["ics.status"] = "unknown-exception"
            return "pdu-length-mismatch"
        code = buf[off]
        name = EXCEPTION_NAMES[code]
        ev["modbus.exception_code"] = code
        ev["modbus.exception"] = ev["ics.status"] = name
        if end - off != 1:
            return "pdu-length-mismatch"
        return None if code in _EXCEPTIONS else "unknown-exception-code"


def _inherit_address(ev: Event, req: Event) -> None:
    """An exception response names the addresses of the request it refuses."""
    for key in ("modbus.address", "modbus.quantity", "modbus.subfunction_code", "modbus.subfunction",
                "ics.address_start", "ics.address_count", "ics.tag", "ics.operation"):
        if key in req:
            ev[key] = req[key]


# -- detection ---------------------------------------------------------------------------------------


def probe(payload: bytes, to_server: bool) -> bool:
    """MBAP framing with a public function code, whose length agrees with the bytes present.

    The first payload must hold whole frames (one or several, the last possibly cut by the segment
    boundary only after a complete first frame), so a random binary protocol rarely passes.
    """
    n = len(payload)
    if n < 8 or not _plausible(payload, 0):
        return False
    end = 6 + ((payload[4] << 8) | payload[5])
    if end > n:
        return False
    for _ in range(8):  # follow a few more frames of the same segment
        if end == n or n - end < 8:
            return end == n or payload[end + 2:end + 4] in (b"\x00\x00", b"\x00", b"")
        if not _plausible(payload, end):
            return False
        end += 6 + ((payload[end + 4] << 8) | payload[end + 5])
    return True


def port_probe(payload: bytes, to_server: bool) -> bool:
    """On port 502: MBAP framing alone (protocol id 0, sane length), whatever the function code."""
    return len(payload) >= 8 and payload[2] == 0 and payload[3] == 0 and 2 <= ((payload[4] << 8) | payload[5]) <= 254


# -- registration ------------------------------------------------------------------------------------


def _fields() -> tuple[Field, ...]:
    F = Field
    objects = tuple(
        F(f"modbus.device_id.{name}", "keyword", f"Read Device Identification object {oid} ({name}).")
        for oid, name in _DEVICE_OBJECTS.items()
    )
    return (
        F("modbus.transaction_id", "integer", "MBAP transaction identifier (pairs a response with its"
          " request)."),
        F("modbus.unit_id", "short", "MBAP unit identifier: the serial slave addressed behind a gateway,"
          " often 0 or 255."),
        F("modbus.function_code", "short", "Function code without the exception bit (0x80)."),
        F("modbus.function", "keyword", "Function name in snake_case, `unknown-<n>` outside the public set."),
        F("modbus.exception_code", "short", "Exception code of an exception response (function code"
          " | 0x80)."),
        F("modbus.exception", "keyword", "Exception name, e.g. `illegal_data_address`, or `unknown-<n>`."),
        F("modbus.subfunction_code", "integer", "FC 8 diagnostics sub-function, or the FC 43 MEI type."),
        F("modbus.subfunction", "keyword", "Name of the FC 8 sub-function or FC 43 MEI type."),
        F("modbus.address", "integer", "Zero-based starting address (protocol address, not 4xxxx notation)."),
        F("modbus.quantity", "integer", "Number of coils, inputs or registers; responses to reads carry"
          " the request's."),
        F("modbus.read_address", "integer", "FC 23: first holding register read."),
        F("modbus.read_quantity", "integer", "FC 23: number of registers read."),
        F("modbus.write_address", "integer", "FC 23: first holding register written."),
        F("modbus.write_quantity", "integer", "FC 23: number of registers written."),
        F("modbus.values", "long", "Register values, or coil/input bits as 0/1, read or written (at most"
          " 125 registers / 2000 bits).", array=True),
        F("modbus.byte_count", "integer", "Byte count field of the PDU."),
        F("modbus.and_mask", "integer", "FC 22 AND mask."),
        F("modbus.or_mask", "integer", "FC 22 OR mask."),
        F("modbus.file_records", "object", "FC 20/21 sub-requests: reference_type, file_number,"
          " record_number, record_length (registers) and, where carried, values.", array=True),
        F("modbus.fifo_address", "integer", "FC 24 FIFO pointer address."),
        F("modbus.fifo_count", "integer", "FC 24 number of registers in the FIFO."),
        F("modbus.server_id", "keyword", "FC 17 server id, run indicator and additional data as text"
          " (non-printable bytes escaped as \\xNN)."),
        F("modbus.diagnostic_data", "keyword", "FC 8 data field, hexadecimal."),
        F("modbus.device_id.read_code", "short", "FC 43/14 read device id code: 1 basic, 2 regular,"
          " 3 extended stream, 4 one object."),
        F("modbus.device_id.object_id", "short", "FC 43/14 request: first object asked for."),
        F("modbus.device_id.conformity_level", "short", "FC 43/14 conformity level of the device."),
        F("modbus.device_id.more_follows", "boolean", "FC 43/14: the identification continues in another"
          " transaction."),
        F("modbus.device_id.next_object_id", "short", "FC 43/14: object to ask for next when more follows."),
        F("modbus.device_id.object_count", "short", "FC 43/14: number of objects the response declares."),
        *objects,
        F("modbus.device_id.objects", "object", "FC 43/14 objects beyond the standard seven, keyed"
          " `object_<id>`."),
        F("modbus.request_time_ms", "date", "Response events: capture time of the paired request (epoch"
          " milliseconds)."),
        F("modbus.response_time_ms", "double", "Response events: milliseconds between the paired request"
          " and this response."),
        F("modbus.anomaly", "keyword", "Why the PDU breaks the specification although it parses:"
          " quantity-out-of-range, byte-count-mismatch, pdu-length-mismatch, length-too-large,"
          " invalid-coil-value, exception-in-request, unknown-exception-code, invalid-reference-type,"
          " invalid-read-device-id-code, invalid-more-follows."),
    )


_ECHOED_ADDRESS = frozenset({5, 6, 15, 16, 22})
"""Functions whose response repeats the request's address on the wire (others inherit it from the request)."""

DISSECTOR = Dissector(
    name="modbus",
    description="Modbus/TCP (MBAP). Exception responses keep the function's name and operation, with"
    " `ics.status` set to the exception. FC 8 and FC 43 rows written `function/sub-function` override"
    " the function's operation for that sub-function.",
    tcp_ports=frozenset({502}),
    udp_ports=frozenset(),
    probe=probe,
    port_probe=port_probe,
    new_session=ModbusSession,
    fields=_fields(),
    operations=OPERATIONS,
    wireshark=WiresharkFields(
        display_filter="mbtcp",
        fields={
            "modbus.transaction_id": "mbtcp.trans_id",
            "modbus.unit_id": "mbtcp.unit_id",
            "modbus.function_code": "modbus.func_code",
            "modbus.exception_code": "modbus.exception_code",
            "modbus.address": "modbus.reference_num",
        },
        decode_as="mbtcp",
        when={"modbus.address": lambda ev: ev.get("ics.role") == "request" or ev.get("modbus.function_code") in
              _ECHOED_ADDRESS and "modbus.exception_code" not in ev},
    ),
)
