"""EtherNet/IP and CIP (TCP 44818, UDP 44818 and 2222): one event per CIP service, per encapsulation command.

Framing (little-endian): every encapsulation message starts with a 24-byte header -- command,
length of the data that follows, session handle, status, 8-byte sender context, options -- and
its command-specific data. On TCP the session cuts messages out of the in-order stream; on UDP
44818 a datagram holds one message (ListIdentity, ListServices, ListInterfaces). SendRRData
(unconnected) and SendUnitData (connected) carry a Common Packet Format (CPF) list: an address
item (null, connected with the connection id, sequenced) and a data item (unconnected, or
connected with the 16-bit connection sequence count) holding a CIP Message Router request or
response. Connected I/O on UDP 2222 (classes 0/1) has no encapsulation header at all: the CPF
list alone, a sequenced address item (connection id, 32-bit encapsulation sequence number) and
the connected data.

CIP requests are service, path size (words), request path (padded EPATH: port segments, 8/16/32
bit logical class/instance/member/connection point/attribute segments, electronic keys, network
segments, ANSI extended symbolic segments that name a tag), service data; responses are the
service with the 0x80 bit, a reserved octet, the general status and additional status words.
Service codes 0x4B-0x63 are specific to the class the path addresses (Read Tag on a Logix symbol,
Forward Open on the Connection Manager, Execute PCCC on the PCCC object...): the tables are keyed
by class (:data:`_CLASS_SERVICES`), and a symbolic path means the Logix tag services.

Events: one per encapsulation message, named after its command, except SendRRData/SendUnitData
whose event is named after the CIP service they carry. Multiple Service Packet and Unconnected
Send produce their own event and one event per embedded request (``cip.embedded``, up to
:data:`MAX_EMBEDDED` per packet, :data:`MAX_DEPTH` levels deep); the replies are unwrapped the same
way and paired with their requests one by one. Every event of one message carries its
encapsulation header fields (``enip.*``).

Pairing: replies to ListIdentity, ListServices, ListInterfaces, RegisterSession and SendRRData by
command and sender context, connected explicit messages (SendUnitData) by the connection sequence
count -- at most :data:`MAX_OUTSTANDING` per flow for :data:`PAIR_TIMEOUT` seconds. A reply takes
the name, operation, path and tag of its request, so class-specific services are named right on
both sides. Requests still unanswered when the flow ends are reported in one event.

Connected I/O is counted, not reported packet by packet: per connection id the session counts
packets, bytes, lost and repeated sequence numbers and emits one ``cyclic_io`` summary event per
connection every :data:`IO_SUMMARY_INTERVAL` seconds of capture time and when the flow ends
(``io_packets=True`` reports every packet instead).

Three outcomes per message, nothing else: an event; an event with ``event.type: ["protocol",
"error"]`` and ``enip.anomaly`` (parses, but breaks the specification); or
:class:`~sensor.dissect.ProtocolViolation` when the flow does not frame as EtherNet/IP (no
plausible encapsulation header where the first message should be, framing lost for good).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

from sensor.dissect import Dissector, Event, ProtocolViolation, WiresharkFields
from sensor.framing import FramedSession
from sensor.schema import Field

__all__ = ["DISSECTOR", "EnipSession", "probe", "port_probe", "MAX_OUTSTANDING", "PAIR_TIMEOUT", "MAX_EMBEDDED",
           "MAX_DEPTH", "MAX_ITEMS", "MAX_VALUES", "MAX_IO_CONNECTIONS", "IO_SUMMARY_INTERVAL", "MAX_BAD_MESSAGES",
           "MAX_BUFFER", "MAX_PATH_CACHE", "MAX_CONNECTIONS", "COMMAND_NAMES", "SERVICE_NAMES", "STATUS_NAMES",
           "VENDOR_NAMES", "DEVICE_TYPE_NAMES", "CLASS_NAMES"]

MAX_OUTSTANDING = 1000
"""Requests awaiting a reply per flow; beyond it the oldest is forgotten (counted)."""
PAIR_TIMEOUT = 60.0
"""Seconds after which an unanswered request no longer pairs with a reply."""
MAX_EMBEDDED = 64
"""Embedded requests/replies of one Multiple Service Packet reported as events; the rest are counted."""
MAX_DEPTH = 4
"""Nesting of Unconnected Send and Multiple Service Packet followed; deeper messages are not unwrapped."""
MAX_ITEMS = 16
"""CPF items decoded per message (a list declaring more is an anomaly)."""
MAX_VALUES = 64
"""Tag values decoded into ``ics.values`` per service."""
MAX_IO_CONNECTIONS = 256
"""Connected I/O connections counted per UDP flow; packets of further connections are counted together."""
IO_SUMMARY_INTERVAL = 60.0
"""Seconds of capture time one ``cyclic_io`` summary covers at most."""
MAX_BAD_MESSAGES = 8
"""Messages in a row with an unknown command (or headers that are no header) before the flow is given up."""
MAX_BUFFER = 64 << 10
"""Bytes one direction may scan for a header after a capture gap before the flow is given up."""
MAX_PATH_CACHE = 512
"""Distinct request paths whose parse is kept per flow (polling repeats the same few)."""
MAX_CONNECTIONS = 256
"""Connections opened by Forward Open remembered per flow (for the route of connected messages)."""
MAX_UNANSWERED_LISTED = 16
"""Function names listed in the unanswered-requests event."""

_HEADER_SIZE = 24

# -- wire layouts (little-endian, except the socket addresses) ------------------------------------

_HDR = struct.Struct("<HHII8sI")  # command, length, session handle, status, sender context, options
_U8U8 = struct.Struct("<BB")
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U16U16 = struct.Struct("<HH")
_U32U32 = struct.Struct("<II")
_RR = struct.Struct("<IHH")  # interface handle, timeout, item count
_SOCKADDR = struct.Struct(">hHI")  # sin_family, sin_port, sin_addr (big-endian, as in BSD sockets)
_IDENTITY = struct.Struct("<HHHBBHI")  # vendor, device type, product code, revision major/minor, status, serial
_FWD_OPEN = struct.Struct("<BBIIHHIB3xIHIHB")  # tick, ticks, O->T id, T->O id, serial, vendor, orig serial,
# timeout multiplier, reserved, O->T RPI, O->T parameters, T->O RPI, T->O parameters, transport/trigger
_LARGE_FWD_OPEN = struct.Struct("<BBIIHHIB3xIIIIB")
_FWD_OPEN_REPLY = struct.Struct("<IIHHIIIBB")  # O->T id, T->O id, serial, vendor, orig serial, APIs, reply size
_FWD_CLOSE = struct.Struct("<BBHHIBB")  # tick, ticks, serial, vendor, orig serial, path size, reserved
_FWD_CLOSE_REPLY = struct.Struct("<HHIBB")  # serial, vendor, orig serial, reply size (or remaining path), reserved
_UCS = struct.Struct("<BBH")  # priority/tick time, timeout ticks, embedded message size
_RR_NULL = struct.Struct("<IHHHHHH")  # interface, timeout, 2 items: null address (type, length), data (type, length)
_RR_CONNECTED = struct.Struct("<IHHHHIHHH")  # interface, timeout, count, connected address item, data item, seq

_ERROR_TYPE = ("protocol", "error")
_NULL_UNCONNECTED = (0x0000, 0x00B2)
_CONNECTED_PAIR = (0x00A1, 0x00B1)

# -- encapsulation --------------------------------------------------------------------------------

# command -> (name, ics.operation)
_COMMANDS: dict[int, tuple[str, str]] = {
    0x0000: ("nop", "other"),
    0x0004: ("list_services", "discovery"),
    0x0063: ("list_identity", "discovery"),
    0x0064: ("list_interfaces", "discovery"),
    0x0065: ("register_session", "session"),
    0x0066: ("unregister_session", "session"),
    0x006F: ("send_rr_data", "other"),
    0x0070: ("send_unit_data", "other"),
    0x0072: ("indicate_status", "other"),
    0x0073: ("cancel", "other"),
}
COMMAND_NAMES: dict[int, str] = {code: name for code, (name, _) in _COMMANDS.items()}
"""Encapsulation command -> name; other codes are ``unknown-<n>``."""
_REPLIED = frozenset({0x0004, 0x0063, 0x0064, 0x0065, 0x006F})  # commands answered by the same command
_DISCOVERY = frozenset({0x0004, 0x0063, 0x0064})  # often broadcast: an unanswered one is no news
_UDP_COMMANDS = frozenset({0x0004, 0x0063, 0x0064})

_ENCAP_STATUS: dict[int, str] = {
    0x0000: "success", 0x0001: "invalid_command", 0x0002: "insufficient_memory", 0x0003: "incorrect_data",
    0x0064: "invalid_session_handle", 0x0065: "invalid_length", 0x0069: "unsupported_protocol_version",
    0x006A: "encapsulated_cip_service_not_allowed",
}

_CPF_ITEMS: dict[int, str] = {
    0x0000: "null_address", 0x000C: "cip_identity", 0x0086: "cip_security", 0x0087: "enip_capability",
    0x0088: "enip_usage", 0x00A1: "connected_address", 0x00B1: "connected_data", 0x00B2: "unconnected_data",
    0x0100: "list_services", 0x8000: "sockaddr_o_t", 0x8001: "sockaddr_t_o", 0x8002: "sequenced_address",
}

# -- CIP services ---------------------------------------------------------------------------------

# Request-body parsers and reply-body parsers are selected by these kinds.
_PLAIN, _MSP, _UCS_KIND, _FWD_OPEN_KIND, _LARGE_OPEN_KIND, _FWD_CLOSE_KIND, _READ_TAG, _WRITE_TAG, _READ_FRAG, \
    _WRITE_FRAG, _RMW, _GET_LIST, _SET_LIST, _RESET, _PCCC_KIND, _MODBUS_READ, _MODBUS_WRITE, _GET_ALL, _GET_SINGLE, \
    _SET_SINGLE = range(20)

# code -> (name, ics.operation, kind)
_COMMON: dict[int, tuple[str, str, int]] = {
    0x01: ("get_attributes_all", "read", _GET_ALL),
    0x02: ("set_attributes_all", "write", _PLAIN),
    0x03: ("get_attribute_list", "read", _GET_LIST),
    0x04: ("set_attribute_list", "write", _SET_LIST),
    0x05: ("reset", "restart", _RESET),
    0x06: ("start", "control_run", _PLAIN),
    0x07: ("stop", "control_stop", _PLAIN),
    0x08: ("create", "config_change", _PLAIN),
    0x09: ("delete", "config_change", _PLAIN),
    0x0A: ("multiple_service_packet", "other", _MSP),
    0x0D: ("apply_attributes", "config_change", _PLAIN),
    0x0E: ("get_attribute_single", "read", _GET_SINGLE),
    0x10: ("set_attribute_single", "write", _SET_SINGLE),
    0x11: ("find_next_object_instance", "read", _PLAIN),
    0x14: ("error_response", "other", _PLAIN),
    0x15: ("restore", "config_change", _PLAIN),
    0x16: ("save", "config_change", _PLAIN),
    0x17: ("no_operation", "other", _PLAIN),
    0x18: ("get_member", "read", _PLAIN),
    0x19: ("set_member", "write", _PLAIN),
    0x1A: ("insert_member", "write", _PLAIN),
    0x1B: ("remove_member", "write", _PLAIN),
    0x1C: ("group_sync", "other", _PLAIN),
    0x1D: ("get_connection_point_member_list", "read", _PLAIN),
}

CM_CLASS, PCCC_CLASS, SYMBOL_CLASS, TEMPLATE_CLASS, FILE_CLASS, MODBUS_CLASS, IDENTITY_CLASS = \
    0x06, 0x67, 0x6B, 0x6C, 0x37, 0x44, 0x01
_LOGIX_TAG_SERVICES: dict[int, tuple[str, str, int]] = {
    0x4C: ("read_tag", "read", _READ_TAG),
    0x4D: ("write_tag", "write", _WRITE_TAG),
    0x4E: ("read_modify_write_tag", "write", _RMW),
    0x52: ("read_tag_fragmented", "read", _READ_FRAG),
    0x53: ("write_tag_fragmented", "write", _WRITE_FRAG),
}
# class -> {class-specific code -> (name, ics.operation, kind)}; a symbolic path uses the Logix tag services.
_CLASS_SERVICES: dict[int, dict[int, tuple[str, str, int]]] = {
    CM_CLASS: {
        0x4E: ("forward_close", "session", _FWD_CLOSE_KIND),
        0x52: ("unconnected_send", "other", _UCS_KIND),
        0x54: ("forward_open", "session", _FWD_OPEN_KIND),
        0x56: ("get_connection_data", "read", _PLAIN),
        0x57: ("search_connection_data", "read", _PLAIN),
        0x5A: ("get_connection_owner", "read", _PLAIN),
        0x5B: ("large_forward_open", "session", _LARGE_OPEN_KIND),
    },
    PCCC_CLASS: {
        0x4B: ("execute_pccc", "other", _PCCC_KIND),
        0x4C: ("execute_dh_plus", "other", _PLAIN),
        0x4D: ("execute_local_pccc", "other", _PCCC_KIND),
    },
    SYMBOL_CLASS: {**_LOGIX_TAG_SERVICES, 0x55: ("get_instance_attribute_list", "read", _PLAIN)},
    TEMPLATE_CLASS: {0x4C: ("read_template", "read", _PLAIN)},
    FILE_CLASS: {
        0x4B: ("initiate_upload", "file_read", _PLAIN),
        0x4C: ("initiate_download", "file_write", _PLAIN),
        0x4D: ("initiate_partial_read", "file_read", _PLAIN),
        0x4E: ("initiate_partial_write", "file_write", _PLAIN),
        0x4F: ("upload_transfer", "file_read", _PLAIN),
        0x50: ("download_transfer", "file_write", _PLAIN),
        0x51: ("clear_file", "file_delete", _PLAIN),
    },
    MODBUS_CLASS: {
        0x4B: ("read_discrete_inputs", "read", _MODBUS_READ),
        0x4C: ("read_coils", "read", _MODBUS_READ),
        0x4D: ("read_input_registers", "read", _MODBUS_READ),
        0x4E: ("read_holding_registers", "read", _MODBUS_READ),
        0x4F: ("write_coils", "write", _MODBUS_WRITE),
        0x50: ("write_holding_registers", "write", _MODBUS_WRITE),
        0x51: ("modbus_passthrough", "other", _PLAIN),
    },
    0xF6: {0x4C: ("get_and_clear", "read", _PLAIN)},  # Ethernet Link: read the counters and clear them
}


def _service_name(code: int) -> str:
    if 0x32 <= code <= 0x4A:
        return f"vendor_specific-{code}"
    if 0x4B <= code <= 0x63:
        return f"class_specific-{code}"
    return f"unknown-{code}"


_SERVICES: tuple[tuple[str, str, int], ...] = tuple(
    _COMMON.get(code) or (_service_name(code), "other", _PLAIN) for code in range(128))
"""Service code (without the reply bit) -> (name, operation, kind) when the class does not decide."""
SERVICE_NAMES: dict[int, str] = {code: entry[0] for code, entry in _COMMON.items()}
"""Common service code -> name (class-specific ones: see :data:`_CLASS_SERVICES`)."""

# -- status -----------------------------------------------------------------------------------------

_STATUS: dict[int, str] = {
    0x00: "success", 0x01: "connection_failure", 0x02: "resource_unavailable", 0x03: "invalid_parameter_value",
    0x04: "path_segment_error", 0x05: "path_destination_unknown", 0x06: "partial_transfer",
    0x07: "connection_lost", 0x08: "service_not_supported", 0x09: "invalid_attribute_value",
    0x0A: "attribute_list_error", 0x0B: "already_in_requested_mode", 0x0C: "object_state_conflict",
    0x0D: "object_already_exists", 0x0E: "attribute_not_settable", 0x0F: "privilege_violation",
    0x10: "device_state_conflict", 0x11: "reply_data_too_large", 0x12: "fragmentation_of_primitive_value",
    0x13: "not_enough_data", 0x14: "attribute_not_supported", 0x15: "too_much_data",
    0x16: "object_does_not_exist", 0x17: "service_fragmentation_sequence_not_in_progress",
    0x18: "no_stored_attribute_data", 0x19: "store_operation_failure",
    0x1A: "routing_failure_request_too_large", 0x1B: "routing_failure_response_too_large",
    0x1C: "missing_attribute_list_entry_data", 0x1D: "invalid_attribute_value_list",
    0x1E: "embedded_service_error", 0x1F: "vendor_specific_error", 0x20: "invalid_parameter",
    0x21: "write_once_already_written", 0x22: "invalid_reply_received", 0x23: "buffer_overflow",
    0x24: "message_format_error", 0x25: "key_failure_in_path", 0x26: "path_size_invalid",
    0x27: "unexpected_attribute_in_list", 0x28: "invalid_member_id", 0x29: "member_not_settable",
    0x2A: "group_2_only_server_general_failure", 0x2B: "unknown_modbus_error", 0x2C: "attribute_not_gettable",
}
STATUS_NAMES: tuple[str, ...] = tuple(_STATUS.get(code, f"unknown-{code}") for code in range(256))
"""CIP general status -> name (snake case); others ``unknown-<n>``."""

# Connection Manager extended status (general status 0x01) -> name.
_CM_EXTENDED: dict[int, str] = {
    0x0100: "connection_in_use", 0x0103: "transport_trigger_not_supported", 0x0106: "ownership_conflict",
    0x0107: "target_connection_not_found", 0x0108: "invalid_network_connection_parameter",
    0x0109: "invalid_connection_size", 0x0110: "target_not_configured", 0x0111: "rpi_not_supported",
    0x0112: "rpi_not_acceptable", 0x0113: "out_of_connections", 0x0114: "vendor_or_product_code_mismatch",
    0x0115: "device_type_mismatch", 0x0116: "revision_mismatch", 0x0117: "invalid_application_path",
    0x0118: "invalid_configuration_path", 0x0119: "non_listen_only_connection_not_opened",
    0x011A: "target_object_out_of_connections", 0x011B: "rpi_smaller_than_production_inhibit",
    0x011C: "transport_class_not_supported", 0x011D: "production_trigger_not_supported",
    0x011E: "direction_not_supported", 0x011F: "invalid_o_t_fixed_variable", 0x0120: "invalid_t_o_fixed_variable",
    0x0121: "invalid_o_t_priority", 0x0122: "invalid_t_o_priority", 0x0123: "invalid_o_t_connection_type",
    0x0124: "invalid_t_o_connection_type", 0x0125: "invalid_o_t_redundant_owner",
    0x0126: "invalid_configuration_size", 0x0127: "invalid_o_t_size", 0x0128: "invalid_t_o_size",
    0x0129: "invalid_configuration_application_path", 0x012A: "invalid_consuming_application_path",
    0x012B: "invalid_producing_application_path", 0x012C: "configuration_symbol_does_not_exist",
    0x012D: "consuming_symbol_does_not_exist", 0x012E: "producing_symbol_does_not_exist",
    0x012F: "inconsistent_application_path_combination", 0x0130: "inconsistent_consume_data_format",
    0x0131: "inconsistent_produce_data_format", 0x0132: "null_forward_open_not_supported",
    0x0203: "connection_timed_out", 0x0204: "unconnected_request_timed_out",
    0x0205: "unconnected_request_parameter_error", 0x0206: "message_too_large_for_unconnected_send",
    0x0207: "unconnected_acknowledged_without_reply", 0x0301: "no_buffer_memory",
    0x0302: "network_bandwidth_not_available", 0x0303: "no_consumed_connection_id_filter",
    0x0304: "not_configured_for_scheduled_priority", 0x0305: "schedule_signature_mismatch",
    0x0306: "schedule_signature_validation_not_possible", 0x0311: "port_not_available",
    0x0312: "link_address_not_valid", 0x0315: "invalid_segment_in_connection_path",
    0x0316: "forward_close_path_mismatch", 0x0317: "scheduling_not_specified", 0x0318: "link_address_to_self",
    0x0319: "secondary_resources_unavailable", 0x031A: "rack_connection_already_established",
    0x031B: "module_connection_already_established", 0x031C: "miscellaneous",
    0x031D: "redundant_connection_mismatch", 0x0800: "network_link_offline",
}

# -- identity ------------------------------------------------------------------------------------

VENDOR_NAMES: dict[int, str] = {
    1: "Rockwell Automation/Allen-Bradley", 2: "Namco Controls", 3: "Honeywell",
    5: "Rockwell Automation/Reliance Electric", 8: "Molex", 12: "Banner Engineering", 26: "Festo",
    40: "WAGO", 43: "Balluff", 44: "Yaskawa Electric", 46: "ABB", 47: "Omron", 48: "Turck",
    50: "Real Time Automation", 56: "Softing", 57: "Pepperl+Fuchs", 58: "Spectrum Controls", 68: "Eaton",
    71: "Toshiba", 74: "Hitachi", 77: "Rockwell Software", 81: "IXXAT Automation",
    82: "Mitsubishi Electric Automation", 83: "Opto 22", 90: "HMS Industrial Networks", 94: "Advantech",
    95: "Square D", 97: "Danfoss", 100: "Bosch Rexroth (Pneumatics)", 108: "Beckhoff Automation",
    109: "National Instruments", 121: "KUKA", 143: "GE Industrial Systems", 145: "Siemens Energy & Automation",
    161: "Mitsubishi Electric", 176: "Red Lion Controls", 181: "Pilz", 243: "Schneider Automation",
    250: "Yokogawa Electric", 255: "Bosch Rexroth", 283: "Hilscher", 287: "Bosch Rexroth (Indramat)",
    309: "ProSoft Technology", 315: "SEW-Eurodrive", 319: "Fuji Electric", 322: "ifm efector",
    326: "GE Fanuc Automation", 345: "Endress+Hauser", 356: "Fanuc Robotics", 367: "Keyence",
}
"""Vendor id -> name for common vendors (ODVA assigns them); others ``unknown-<n>``."""

DEVICE_TYPE_NAMES: dict[int, str] = {
    0x00: "generic_device", 0x02: "ac_drive", 0x03: "motor_overload", 0x04: "limit_switch",
    0x05: "inductive_proximity_switch", 0x06: "photoelectric_sensor", 0x07: "general_purpose_discrete_io",
    0x09: "resolver", 0x0C: "communications_adapter", 0x0E: "programmable_logic_controller",
    0x10: "position_controller", 0x13: "dc_drive", 0x15: "contactor", 0x16: "motor_starter", 0x17: "soft_start",
    0x18: "human_machine_interface", 0x1A: "mass_flow_controller", 0x1B: "pneumatic_valve",
    0x1C: "vacuum_pressure_gauge", 0x1D: "process_control_value", 0x1E: "residual_gas_analyzer",
    0x1F: "dc_power_generator", 0x20: "rf_power_generator", 0x21: "turbomolecular_vacuum_pump",
    0x22: "encoder", 0x23: "safety_discrete_io", 0x24: "fluid_flow_controller", 0x25: "cip_motion_drive",
    0x26: "componet_repeater", 0x27: "mass_flow_controller_enhanced", 0x28: "cip_modbus_device",
    0x29: "cip_modbus_translator", 0x2A: "safety_analog_io", 0x2B: "generic_device_keyable",
    0x2C: "managed_switch", 0xC8: "embedded_component",
}
"""Device type (Identity attribute 2) -> name; others ``unknown-<n>``."""

_STATES = {0: "nonexistent", 1: "self_testing", 2: "standby", 3: "operational", 4: "major_recoverable_fault",
           5: "major_unrecoverable_fault", 255: "default"}
_STATUS_BITS = ((0x0001, "owned"), (0x0004, "configured"), (0x0100, "minor_recoverable_fault"),
                (0x0200, "minor_unrecoverable_fault"), (0x0400, "major_recoverable_fault"),
                (0x0800, "major_unrecoverable_fault"))

CLASS_NAMES: dict[int, str] = {
    0x01: "identity", 0x02: "message_router", 0x03: "devicenet", 0x04: "assembly", 0x05: "connection",
    0x06: "connection_manager", 0x07: "register", 0x08: "discrete_input_point", 0x09: "discrete_output_point",
    0x0A: "analog_input_point", 0x0B: "analog_output_point", 0x0E: "presence_sensing", 0x0F: "parameter",
    0x10: "parameter_group", 0x12: "group", 0x1D: "discrete_input_group", 0x1E: "discrete_output_group",
    0x1F: "discrete_group", 0x20: "analog_input_group", 0x21: "analog_output_group", 0x22: "analog_group",
    0x23: "position_sensor", 0x24: "position_controller_supervisor", 0x25: "position_controller",
    0x26: "block_sequencer", 0x27: "command_block", 0x28: "motor_data", 0x29: "control_supervisor",
    0x2A: "ac_dc_drive", 0x2B: "acknowledge_handler", 0x2C: "overload", 0x2D: "softstart", 0x2E: "selection",
    0x30: "s_device_supervisor", 0x31: "s_analog_sensor", 0x32: "s_analog_actuator",
    0x33: "s_single_stage_controller", 0x34: "s_gas_calibration", 0x35: "trip_point", 0x37: "file",
    0x38: "s_partial_pressure", 0x39: "safety_supervisor", 0x3A: "safety_validator",
    0x3B: "safety_discrete_output_point", 0x3C: "safety_discrete_output_group",
    0x3D: "safety_discrete_input_point", 0x3E: "safety_discrete_input_group",
    0x3F: "safety_dual_channel_output", 0x40: "s_sensor_calibration", 0x41: "event_log",
    0x42: "motion_axis", 0x43: "time_sync", 0x44: "modbus", 0x45: "originator_connection_list",
    0x46: "modbus_serial_link", 0x47: "device_level_ring", 0x48: "qos", 0x49: "safety_analog_input_point",
    0x4A: "safety_analog_input_group", 0x4B: "safety_dual_channel_analog_input", 0x4C: "sercos_iii_link",
    0x4D: "target_connection_list", 0x4E: "base_energy", 0x4F: "electrical_energy",
    0x50: "non_electrical_energy", 0x51: "base_switch", 0x52: "snmp", 0x53: "power_management",
    0x54: "rstp_bridge", 0x55: "rstp_port", 0x56: "prp_hsr_protocol", 0x57: "prp_hsr_nodes_table",
    0x58: "safety_feedback", 0x59: "safety_dual_channel_feedback", 0x5A: "safety_stop_functions",
    0x5B: "safety_limit_functions", 0x5C: "power_curtailment", 0x5D: "cip_security",
    0x5E: "ethernetip_security", 0x5F: "certificate_management", 0x67: "pccc", 0x6B: "logix_symbol",
    0x6C: "logix_template", 0xF0: "controlnet", 0xF1: "controlnet_keeper", 0xF2: "controlnet_scheduling",
    0xF3: "connection_configuration", 0xF4: "port", 0xF5: "tcp_ip_interface", 0xF6: "ethernet_link",
    0xF7: "componet_link", 0xF8: "componet_repeater",
}
"""Class id -> object name; vendor-specific ids are ``vendor_specific-<n>``, others ``unknown-<n>``."""


def _class_name(code: int) -> str:
    name = CLASS_NAMES.get(code)
    if name is not None:
        return name
    if 0x64 <= code <= 0xC7 or 0x300 <= code <= 0x4FF:
        return f"vendor_specific-{code}"
    return f"unknown-{code}"


# -- tag data types ---------------------------------------------------------------------------------

# CIP elementary data type -> (name, struct format, size)
_DATA_TYPES: dict[int, tuple[str, str, int]] = {
    0xC1: ("BOOL", "B", 1), 0xC2: ("SINT", "b", 1), 0xC3: ("INT", "h", 2), 0xC4: ("DINT", "i", 4),
    0xC5: ("LINT", "q", 8), 0xC6: ("USINT", "B", 1), 0xC7: ("UINT", "H", 2), 0xC8: ("UDINT", "I", 4),
    0xC9: ("ULINT", "Q", 8), 0xCA: ("REAL", "f", 4), 0xCB: ("LREAL", "d", 8), 0xD1: ("BYTE", "B", 1),
    0xD2: ("WORD", "H", 2), 0xD3: ("DWORD", "I", 4), 0xD4: ("LWORD", "Q", 8),
}
_STRUCT_TYPE = 0xA0  # followed by a 16-bit structure handle
_STRING_TYPES = {0xD0: "STRING", 0xDA: "SHORT_STRING", 0xD5: "STRING2", 0xD9: "STRINGN", 0xDE: "STRINGI"}
_VALUE_FORMATS: dict[tuple[str, int], struct.Struct] = {}


def _unpack_values(fmt: str, count: int, buf: bytes, off: int) -> tuple[Any, ...]:
    key = (fmt, count)
    s = _VALUE_FORMATS.get(key)
    if s is None:
        s = _VALUE_FORMATS[key] = struct.Struct(f"<{count}{fmt}")
    return s.unpack_from(buf, off)


def _numbers(values: tuple[Any, ...], boolean: bool) -> list[Any]:
    if boolean:
        return [1 if v else 0 for v in values]
    return [v for v in values if v.__class__ is not float or math.isfinite(v)]


# -- PCCC (Rockwell/Allen-Bradley DF1 commands carried by the PCCC object) --------------------------

# (command, function) -> (name, ics.operation); function None: the command has no function code.
_PCCC: dict[tuple[int, int | None], tuple[str, str]] = {
    (0x00, None): ("protected_write", "write"),
    (0x01, None): ("unprotected_read", "read"),
    (0x02, None): ("protected_bit_write", "write"),
    (0x05, None): ("unprotected_bit_write", "write"),
    (0x08, None): ("unprotected_write", "write"),
    (0x06, 0x00): ("echo", "diagnostic"),
    (0x06, 0x01): ("read_diagnostic_counters", "diagnostic"),
    (0x06, 0x02): ("set_variables", "config_change"),
    (0x06, 0x03): ("diagnostic_status", "identity"),
    (0x06, 0x04): ("set_timeout", "config_change"),
    (0x06, 0x05): ("set_naks", "config_change"),
    (0x06, 0x06): ("set_enqs", "config_change"),
    (0x06, 0x07): ("reset_diagnostic_counters", "diagnostic"),
    (0x06, 0x08): ("set_data_table_size", "config_change"),
    (0x06, 0x09): ("read_link_parameters", "read"),
    (0x06, 0x0A): ("set_link_parameters", "config_change"),
    (0x07, 0x00): ("disable_outputs", "control_stop"),
    (0x07, 0x01): ("enable_outputs", "control_run"),
    (0x07, 0x03): ("enable_plc_scanning", "control_run"),
    (0x07, 0x04): ("enter_download_mode", "program_download"),
    (0x07, 0x05): ("exit_download_upload_mode", "mode_change"),
    (0x07, 0x06): ("enter_upload_mode", "program_upload"),
    (0x0F, 0x00): ("word_range_write", "write"),
    (0x0F, 0x01): ("word_range_read", "read"),
    (0x0F, 0x02): ("bit_write", "write"),
    (0x0F, 0x03): ("file_write", "write"),
    (0x0F, 0x04): ("file_read", "read"),
    (0x0F, 0x05): ("download_request", "program_download"),
    (0x0F, 0x06): ("upload", "program_upload"),
    (0x0F, 0x07): ("shutdown", "control_stop"),
    (0x0F, 0x08): ("physical_write", "write"),
    (0x0F, 0x09): ("physical_read", "read"),
    (0x0F, 0x0A): ("restart_request", "restart"),
    (0x0F, 0x11): ("get_edit_resource", "program_download"),
    (0x0F, 0x12): ("return_edit_resource", "program_download"),
    (0x0F, 0x17): ("read_bytes_physical", "read"),
    (0x0F, 0x18): ("write_bytes_physical", "write"),
    (0x0F, 0x26): ("read_modify_write", "write"),
    (0x0F, 0x29): ("read_section_size", "read"),
    (0x0F, 0x3A): ("set_cpu_mode", "mode_change"),
    (0x0F, 0x41): ("disable_forces", "config_change"),
    (0x0F, 0x50): ("download_all_request", "program_download"),
    (0x0F, 0x52): ("download_completed", "program_download"),
    (0x0F, 0x53): ("upload_all_request", "program_upload"),
    (0x0F, 0x55): ("upload_completed", "program_upload"),
    (0x0F, 0x57): ("initialize_memory", "program_delete"),
    (0x0F, 0x5E): ("modify_plc2_compatibility_file", "config_change"),
    (0x0F, 0x67): ("typed_write", "write"),
    (0x0F, 0x68): ("typed_read", "read"),
    (0x0F, 0x79): ("read_modify_write_n", "write"),
    (0x0F, 0x80): ("change_cpu_mode", "mode_change"),
    (0x0F, 0x81): ("open_file", "other"),
    (0x0F, 0x82): ("close_file", "other"),
    (0x0F, 0x88): ("execute_multiple_commands", "other"),
    (0x0F, 0x8F): ("apply_port_configuration", "config_change"),
    (0x0F, 0xA1): ("protected_typed_logical_read_2", "read"),
    (0x0F, 0xA2): ("protected_typed_logical_read_3", "read"),
    (0x0F, 0xA7): ("protected_typed_file_read", "file_read"),
    (0x0F, 0xA9): ("protected_typed_logical_write_2", "write"),
    (0x0F, 0xAA): ("protected_typed_logical_write_3", "write"),
    (0x0F, 0xAB): ("protected_typed_logical_masked_write_3", "write"),
    (0x0F, 0xAF): ("protected_typed_file_write", "file_write"),
}
_PCCC_WITH_FUNCTION = frozenset({0x06, 0x07, 0x0F})
_PCCC_LOGICAL = frozenset({0xA1, 0xA2, 0xA9, 0xAA, 0xAB})  # byte size, file number, type, element[, sub-element]
_PCCC_FILE_TYPES = {0x82: "O", 0x83: "I", 0x84: "S", 0x85: "B", 0x86: "T", 0x87: "C", 0x88: "R", 0x89: "N",
                    0x8A: "F", 0x8D: "ST", 0x8E: "A", 0x91: "L", 0x92: "MG", 0x93: "PD"}
_PCCC_REMOTE = {0x10: "illegal_command_or_format", 0x20: "host_problem", 0x30: "remote_node_missing",
                0x40: "hardware_fault", 0x50: "addressing_problem", 0x60: "command_protection",
                0x70: "processor_in_program_mode", 0x80: "compatibility_file_missing",
                0x90: "remote_node_cannot_buffer", 0xA0: "wait_ack", 0xB0: "remote_node_download_problem",
                0xC0: "wait_ack", 0xF0: "extended_status"}
_PCCC_LOCAL = {0x01: "destination_out_of_buffers", 0x02: "delivery_not_guaranteed", 0x03: "duplicate_token_holder",
               0x04: "local_port_disconnected", 0x05: "application_timeout", 0x06: "duplicate_node",
               0x07: "station_offline", 0x08: "hardware_fault"}


def _pccc_status(sts: int) -> str:
    return _PCCC_REMOTE.get(sts & 0xF0) or _PCCC_LOCAL.get(sts) or f"unknown-{sts}"


# -- requests the session keeps, and what a reply inherits -----------------------------------------

_NO_FIELDS: dict[str, Any] = {}
_TAG_INHERIT = ("ics.unit", "cip.elements", "cip.offset", "ics.address_start", "ics.address_count",
                "cip.data_type", "cip.data_type_code")
_KIND_INHERIT: tuple[tuple[str, ...], ...] = tuple(
    _TAG_INHERIT if kind in (_READ_TAG, _WRITE_TAG, _READ_FRAG, _WRITE_FRAG, _RMW) else
    ("ics.unit", "cip.attribute", "ics.tag", "ics.address_count") if kind in (_GET_LIST, _SET_LIST) else
    ("ics.unit", "cip.pccc.function", "cip.pccc.function_code", "cip.pccc.address", "ics.tag", "ics.address_start")
    if kind == _PCCC_KIND else
    ("ics.unit", "ics.address_start", "ics.address_count") if kind in (_MODBUS_READ, _MODBUS_WRITE) else
    ("ics.unit", "cip.route", "cip.cm.connection_path", "cip.cm.connection_class")
    if kind in (_UCS_KIND, _FWD_OPEN_KIND, _LARGE_OPEN_KIND, _FWD_CLOSE_KIND) else
    ("ics.unit",)
    for kind in range(20))
"""Per request kind: the fields a reply takes from its request besides the request path's."""
_TOP_LEVEL_HEADER = ("enip.command", "enip.command_name", "enip.length", "enip.session_handle", "enip.status",
                     "enip.status_name", "enip.sender_context", "enip.options", "enip.interface_handle",
                     "enip.timeout", "enip.cpf.item_count", "enip.cpf.item_types", "enip.connection_id",
                     "cip.sequence_count")

# -- request paths --------------------------------------------------------------------------------


class _Path:
    """One parsed request path: the fields it gives an event, and what service naming needs."""

    __slots__ = ("fields", "cls", "symbolic", "route", "anomaly", "classes", "instances", "attributes")

    def __init__(self, fields: dict[str, Any], cls: int, symbolic: bool, route: str, anomaly: str | None,
                 classes: tuple[int, ...], instances: tuple[int, ...], attributes: tuple[int, ...]) -> None:
        self.fields = fields
        self.cls = cls  # first class segment, -1 without one
        self.symbolic = symbolic
        self.route = route
        self.anomaly = anomaly
        self.classes = classes
        self.instances = instances
        self.attributes = attributes


_LOGICAL_KEYS = ("class", "instance", "member", "point", "attribute", "key", "service", "extended")


def parse_path(p: bytes) -> _Path:
    """A padded EPATH (request, route or connection path) -> :class:`_Path`. Never raises."""
    n = len(p)
    i = 0
    classes: list[int] = []
    instances: list[int] = []
    attributes: list[int] = []
    members: list[int] = []
    points: list[int] = []
    symbols: list[str] = []
    route: list[str] = []
    text: list[str] = []
    tag: list[str] = []
    in_index = False
    anomaly: str | None = None
    while i < n:
        s = p[i]
        kind = s >> 5
        start = i
        if kind == 0:  # port segment
            port = s & 0x0F
            extended = s & 0x10
            i += 1
            size = 1
            if extended:
                if i >= n:
                    anomaly = "path-truncated"
                    break
                size = p[i]
                i += 1
            if port == 15:
                if i + 2 > n:
                    anomaly = "path-truncated"
                    break
                port = p[i] | p[i + 1] << 8
                i += 2
            if i + size > n:
                anomaly = "path-truncated"
                break
            link = p[i:i + size]
            i += size
            if (i - start) & 1:
                i += 1
            address = link.decode("latin-1") if extended else str(link[0])
            route.append(f"{port},{address}")
            text.append(f"port {port} link {address}")
            in_index = False
        elif kind == 1:  # logical segment
            ltype = (s >> 2) & 7
            fmt = s & 3
            if ltype == 5:  # special: electronic key
                if i + 10 > n or p[i + 1] != 4:
                    anomaly = "unsupported-path-segment" if i + 10 <= n else "path-truncated"
                    break
                vendor, devtype, product = struct.unpack_from("<HHH", p, i + 2)
                major, minor = p[i + 8] & 0x7F, p[i + 9]
                text.append(f"key vendor {vendor} type {devtype} product {product} revision {major}.{minor}")
                i += 10
                continue
            if fmt == 0:
                if i + 2 > n:
                    anomaly = "path-truncated"
                    break
                value = p[i + 1]
                i += 2
            elif fmt == 1:
                if i + 4 > n:
                    anomaly = "path-truncated"
                    break
                value = p[i + 2] | p[i + 3] << 8
                i += 4
            elif fmt == 2:
                if i + 6 > n:
                    anomaly = "path-truncated"
                    break
                value = _U32.unpack_from(p, i + 2)[0]
                i += 6
            else:
                anomaly = "unsupported-path-segment"
                break
            name = _LOGICAL_KEYS[ltype]
            if ltype == 0:
                classes.append(value)
                text.append(f"class 0x{value:02x}")
            elif ltype == 1:
                instances.append(value)
                text.append(f"instance {value}")
            elif ltype == 2:
                members.append(value)
                text.append(f"member {value}")
                if tag:
                    tag.append(f",{value}" if in_index else f"[{value}")
                    in_index = True
                    continue
            elif ltype == 3:
                points.append(value)
                text.append(f"point {value}")
            elif ltype == 4:
                attributes.append(value)
                text.append(f"attribute {value}")
            else:
                text.append(f"{name} {value}")
            if in_index:
                tag.append("]")
                in_index = False
        elif kind == 2:  # network segment
            if i + 2 > n:
                anomaly = "path-truncated"
                break
            if s in (0x50, 0x5F):  # safety, extended: a size in words
                i += 2 + 2 * p[i + 1]
            else:
                i += 2
            text.append(f"network 0x{s:02x}")
        elif s == 0x91:  # ANSI extended symbolic segment
            if i + 2 > n:
                anomaly = "path-truncated"
                break
            size = p[i + 1]
            if i + 2 + size > n:
                anomaly = "path-truncated"
                break
            symbol = p[i + 2:i + 2 + size].decode("latin-1")
            i += 2 + size + (size & 1)
            if in_index:
                tag.append("]")
                in_index = False
            symbols.append(symbol)
            tag.append(f".{symbol}" if tag else symbol)
            text.append(f"symbol {symbol}")
        elif kind == 3 and s & 0x1F:  # symbolic segment, ASCII
            size = s & 0x1F
            if i + 1 + size > n:
                anomaly = "path-truncated"
                break
            symbol = p[i + 1:i + 1 + size].decode("latin-1")
            i += 1 + size + ((1 + size) & 1)
            symbols.append(symbol)
            tag.append(f".{symbol}" if tag else symbol)
            text.append(f"symbol {symbol}")
        elif s == 0x80:  # simple data segment: a size in words
            if i + 2 > n:
                anomaly = "path-truncated"
                break
            i += 2 + 2 * p[i + 1]
            text.append("data")
        else:
            anomaly = "unsupported-path-segment"
            break
    if i > n and anomaly is None:
        anomaly = "path-truncated"
    if in_index:
        tag.append("]")
    fields: dict[str, Any] = {}
    cls = classes[0] if classes else -1
    if classes:
        fields["cip.class"] = tuple(classes)
        fields["cip.class_name"] = _class_name(cls)
    if instances:
        fields["cip.instance"] = tuple(instances)
    if attributes:
        fields["cip.attribute"] = tuple(attributes)
    if members:
        fields["cip.member"] = tuple(members)
    if points:
        fields["cip.connection_point"] = tuple(points)
    if symbols:
        name = "".join(tag)
        fields["cip.symbol"] = tuple(symbols)
        fields["cip.tag"] = name
        fields["ics.tag"] = (name,)
    elif classes:
        parts = [str(cls)]
        if instances:
            parts.append(str(instances[0]))
            if attributes:
                parts.append(str(attributes[0]))
        fields["ics.tag"] = (":".join(parts),)
    routed = ",".join(route)
    if route:
        fields["cip.route"] = routed
        fields["ics.unit"] = routed
    if text:
        fields["cip.path"] = ", ".join(text)
    return _Path(fields, cls, bool(symbols), routed, anomaly, tuple(classes), tuple(instances), tuple(attributes))


# -- small helpers ------------------------------------------------------------------------------------


def _flag(ev: Event, reason: str) -> None:
    anomalies = ev.get("enip.anomaly")
    if anomalies is None:
        ev["enip.anomaly"] = [reason]
    elif reason not in anomalies:
        anomalies.append(reason)


def _ipv4(address: int) -> str:
    return f"{address >> 24}.{address >> 16 & 255}.{address >> 8 & 255}.{address & 255}"


def _text(raw: bytes) -> str:
    """Device strings as text: printable ASCII kept, anything else escaped as \\xNN."""
    out = raw.decode("latin-1")
    if out.isprintable() and out.isascii():
        return out
    return "".join(c if " " <= c <= "~" else f"\\x{ord(c):02x}" for c in out)


def _identity(buf: bytes, o: int, end: int, ev: Event) -> str | None:
    """Identity object attributes 1-8 (vendor ... state) from ``o``: ListIdentity item or Get_Attributes_All."""
    if o + 15 > end:
        return "identity-truncated"
    vendor, devtype, product, major, minor, status, serial = _IDENTITY.unpack_from(buf, o)
    ev["enip.identity.vendor_id"] = vendor
    ev["enip.identity.vendor_name"] = VENDOR_NAMES.get(vendor) or f"unknown-{vendor}"
    ev["enip.identity.device_type"] = devtype
    ev["enip.identity.device_type_name"] = DEVICE_TYPE_NAMES.get(devtype) or f"unknown-{devtype}"
    ev["enip.identity.product_code"] = product
    ev["enip.identity.revision"] = f"{major}.{minor}"
    ev["enip.identity.revision_major"] = major
    ev["enip.identity.revision_minor"] = minor
    ev["enip.identity.status"] = status
    flags = [name for bit, name in _STATUS_BITS if status & bit]
    if flags:
        ev["enip.identity.status_flags"] = flags
    ev["enip.identity.serial_number"] = serial
    ev["enip.identity.serial"] = f"0x{serial:08x}"
    length = buf[o + 14]
    name_end = o + 15 + length
    if name_end > end:
        ev["enip.identity.product_name"] = _text(buf[o + 15:end])
        return "identity-truncated"
    ev["enip.identity.product_name"] = _text(buf[o + 15:name_end])
    if name_end < end:
        state = buf[name_end]
        ev["enip.identity.state"] = state
        ev["enip.identity.state_name"] = _STATES.get(state) or f"unknown-{state}"
    ev["ics.tag"] = ("identity",)
    return None


def _net_params(value: int, large: bool) -> tuple[int, str, str]:
    """Network connection parameters -> (size, connection type, priority)."""
    if large:
        size, ctype, prio = value & 0xFFFF, (value >> 29) & 3, (value >> 26) & 3
    else:
        size, ctype, prio = value & 0x1FF, (value >> 13) & 3, (value >> 10) & 3
    return size, ("null", "multicast", "point_to_point", "reserved")[ctype], ("low", "high", "scheduled",
                                                                            "urgent")[prio]


_TRIGGERS = ("cyclic", "change_of_state", "application_object")

# -- request body parsers: (buf, o, end, ev) -> anomaly or None ------------------------------------------


def _elements(buf: bytes, o: int, end: int, ev: Event) -> str | None:
    if o + 2 > end:
        return "service-data-truncated"
    count = buf[o] | buf[o + 1] << 8
    ev["cip.elements"] = ev["ics.address_count"] = count
    return None


def _read_frag(buf: bytes, o: int, end: int, ev: Event) -> str | None:
    if o + 6 > end:
        return "service-data-truncated"
    count, offset = struct.unpack_from("<HI", buf, o)
    ev["cip.elements"] = ev["ics.address_count"] = count
    ev["cip.offset"] = ev["ics.address_start"] = offset
    return None


def _typed_data(buf: bytes, o: int, end: int, ev: Event, count: int | None) -> str | None:
    """Type code (and structure handle), then ``count`` elements (None: as many as present)."""
    if o + 2 > end:
        return "service-data-truncated"
    code = buf[o] | buf[o + 1] << 8
    o += 2
    ev["cip.data_type_code"] = code
    if code == _STRUCT_TYPE:
        ev["cip.data_type"] = "STRUCT"
        if o + 2 > end:
            return "service-data-truncated"
        ev["cip.structure_handle"] = buf[o] | buf[o + 1] << 8
        return None
    entry = _DATA_TYPES.get(code)
    if entry is None:
        ev["cip.data_type"] = _STRING_TYPES.get(code) or f"unknown-{code}"
        return None
    name, fmt, size = entry
    ev["cip.data_type"] = name
    present = (end - o) // size
    if count is None:
        count = present
    n = min(count, present, MAX_VALUES)
    if n:
        ev["ics.values"] = _numbers(_unpack_values(fmt, n, buf, o), code == 0xC1)
    return None


def _write_tag(buf: bytes, o: int, end: int, ev: Event) -> str | None:
    if o + 4 > end:
        return "service-data-truncated"
    code = buf[o] | buf[o + 1] << 8
    head = 4 if code == _STRUCT_TYPE else 2
    if o + head + 2 > end:
        return "service-data-truncated"
    count = buf[o + head] | buf[o + head + 1] << 8
    ev["cip.elements"] = ev["ics.address_count"] = count
    data = buf[o:o + head] + buf[o + head + 2:end]  # the type, then the data (a copy, small)
    reason = _typed_data(data, 0, len(data), ev, count)
    size = _DATA_TYPES.get(code, ("", "", 0))[2]
    if reason is None and size and len(data) - 2 != size * count:
        return "tag-data-length-mismatch"
    return reason


def _write_frag(buf: bytes, o: int, end: int, ev: Event) -> str | None:
    if o + 8 > end:
        return "service-data-truncated"
    code = buf[o] | buf[o + 1] << 8
    head = 4 if code == _STRUCT_TYPE else 2
    if o + head + 6 > end:
        return "service-data-truncated"
    count, offset = struct.unpack_from("<HI", buf, o + head)
    ev["cip.elements"] = ev["ics.address_count"] = count
    ev["cip.offset"] = ev["ics.address_start"] = offset
    data = buf[o:o + head] + buf[o + head + 6:end]
    return _typed_data(data, 0, len(data), ev, None)


def _rmw(buf: bytes, o: int, end: int, ev: Event) -> str | None:
    if o + 2 > end:
        return "service-data-truncated"
    size = buf[o] | buf[o + 1] << 8
    ev["cip.mask_size"] = size
    if o + 2 + 2 * size != end:
        return "tag-data-length-mismatch"
    return None


def _attribute_list(buf: bytes, o: int, end: int, ev: Event, with_values: bool) -> str | None:
    if o + 2 > end:
        return "service-data-truncated"
    count = buf[o] | buf[o + 1] << 8
    ev["ics.address_count"] = count
    if with_values:  # values have class-defined sizes: only the first attribute id is certain
        if count and o + 4 <= end:
            ids = [buf[o + 2] | buf[o + 3] << 8]
        else:
            ids = []
    else:
        if o + 2 + 2 * count > end:
            count = (end - o - 2) // 2
            reason: str | None = "attribute-list-truncated"
        else:
            reason = None if o + 2 + 2 * count == end else "trailing-service-data"
        ids = list(struct.unpack_from(f"<{count}H", buf, o + 2)) if count else []
        if ids:
            _list_attributes(ev, ids)
        return reason
    if ids:
        _list_attributes(ev, ids)
    return None


def _list_attributes(ev: Event, ids: list[int]) -> None:
    """Get/Set_Attribute_List: the listed attributes join the path's, one ``ics.tag`` each."""
    before = ev.get("cip.attribute", ())
    attributes = (*before, *ids)
    ev["cip.attribute"] = attributes
    classes, instances = ev.get("cip.class"), ev.get("cip.instance")
    if classes:
        prefix = f"{classes[0]}:{instances[0]}:" if instances else f"{classes[0]}:0:"
        ev["ics.tag"] = tuple(f"{prefix}{a}" for a in attributes)


def _reset(buf: bytes, o: int, end: int, ev: Event) -> str | None:
    if o < end:
        ev["cip.reset_type"] = buf[o]
    return None


def _modbus_read(buf: bytes, o: int, end: int, ev: Event) -> str | None:
    if o + 4 > end:
        return "service-data-truncated"
    start, count = _U16U16.unpack_from(buf, o)
    ev["ics.address_start"], ev["ics.address_count"] = start, count
    return None


def _modbus_write(buf: bytes, o: int, end: int, ev: Event) -> str | None:
    reason = _modbus_read(buf, o, end, ev)
    if reason is None and "coils" not in ev["ics.function"]:
        count = min(ev["ics.address_count"], (end - o - 4) // 2, MAX_VALUES)
        if count:
            ev["ics.values"] = list(_unpack_values("H", count, buf, o + 4))
    return reason


def _pccc_request(buf: bytes, o: int, end: int, ev: Event) -> str | None:
    """Execute PCCC: requestor id (length octet counts itself), then CMD, STS, TNS, FNC and parameters."""
    if o >= end:
        return "service-data-truncated"
    p = o + buf[o]
    if buf[o] < 7 or p + 4 > end:
        return "pccc-truncated"
    ev["cip.pccc.vendor_id"] = buf[o + 1] | buf[o + 2] << 8
    ev["cip.pccc.serial_number"] = _U32.unpack_from(buf, o + 3)[0]
    cmd = buf[p]
    ev["cip.pccc.command"] = cmd
    ev["cip.pccc.transaction"] = buf[p + 2] | buf[p + 3] << 8
    fnc: int | None = None
    if cmd in _PCCC_WITH_FUNCTION:
        if p + 5 > end:
            return "pccc-truncated"
        fnc = buf[p + 4]
        ev["cip.pccc.function_code"] = fnc
    entry = _PCCC.get((cmd, fnc))
    name, operation = entry if entry else (f"unknown-{cmd}" if fnc is None else f"unknown-{cmd}-{fnc}", "other")
    ev["cip.pccc.function"] = name
    ev["ics.operation"] = operation
    if fnc in _PCCC_LOGICAL:
        _pccc_address(buf, p + 5, end, ev, fnc in (0xA2, 0xAA, 0xAB))
    return None


def _pccc_address(buf: bytes, o: int, end: int, ev: Event, sub: bool) -> None:
    """Byte size, file number, file type, element[, sub-element]: ``N7:0`` style tag."""
    fields: list[int] = []
    if o >= end:
        return
    ev["cip.pccc.byte_size"] = buf[o]
    o += 1
    for k in range(4 if sub else 3):
        if o >= end:
            return
        if buf[o] == 0xFF and k != 1:  # 255 and above: 0xFF then 16 bits (the type is one octet)
            if o + 3 > end:
                return
            fields.append(buf[o + 1] | buf[o + 2] << 8)
            o += 3
        else:
            fields.append(buf[o])
            o += 1
    number, ftype, element = fields[0], fields[1], fields[2]
    letter = _PCCC_FILE_TYPES.get(ftype, f"0x{ftype:02x}:")
    tag = f"{letter}{number}:{element}"
    if sub and fields[3]:
        tag += f".{fields[3]}"
    ev["cip.pccc.address"] = tag
    ev["ics.tag"] = (tag,)
    ev["ics.address_start"] = element


def _nothing(buf: bytes, o: int, end: int, ev: Event) -> str | None:
    return None


_REQUEST_PARSERS: dict[int, Callable[[bytes, int, int, Event], str | None]] = {
    _READ_TAG: _elements,
    _WRITE_TAG: _write_tag,
    _READ_FRAG: _read_frag,
    _WRITE_FRAG: _write_frag,
    _RMW: _rmw,
    _GET_LIST: lambda buf, o, end, ev: _attribute_list(buf, o, end, ev, False),
    _SET_LIST: lambda buf, o, end, ev: _attribute_list(buf, o, end, ev, True),
    _RESET: _reset,
    _PCCC_KIND: _pccc_request,
    _MODBUS_READ: _modbus_read,
    _MODBUS_WRITE: _modbus_write,
}

# -- reply body parsers: (buf, o, end, ev, request event or None) -> anomaly or None -----------------


def _read_tag_reply(buf: bytes, o: int, end: int, ev: Event, req: Event | None) -> str | None:
    if o >= end:
        return None  # an error reply carries no data
    return _typed_data(buf, o, end, ev, None)


def _pccc_reply(buf: bytes, o: int, end: int, ev: Event, req: Event | None) -> str | None:
    if o >= end:
        return None
    p = o + buf[o]
    if buf[o] < 7 or p + 4 > end:
        return "pccc-truncated"
    cmd, sts = buf[p], buf[p + 1]
    ev["cip.pccc.command"] = cmd
    ev["cip.pccc.status"] = sts
    ev["cip.pccc.transaction"] = buf[p + 2] | buf[p + 3] << 8
    if sts:
        if sts == 0xF0 and p + 5 <= end:
            ev["cip.pccc.extended_status"] = buf[p + 4]
        ev["ics.status"] = f"pccc:{_pccc_status(sts)}"
        ev["event.outcome"] = "failure"
    if req is not None and "cip.pccc.command" in req and req["cip.pccc.command"] | 0x40 != cmd:
        return "pccc-reply-command-mismatch"
    return None


def _get_all_reply(buf: bytes, o: int, end: int, ev: Event, req: Event | None) -> str | None:
    if o < end and ev.get("cip.class") == (IDENTITY_CLASS,) and ev.get("cip.general_status") == 0:
        return _identity(buf, o, end, ev)
    return None


def _get_single_reply(buf: bytes, o: int, end: int, ev: Event, req: Event | None) -> str | None:
    """Identity attribute 7 (product name, a SHORT_STRING)."""
    if (o < end and ev.get("cip.class") == (IDENTITY_CLASS,) and ev.get("cip.attribute") == (7,)
            and ev.get("cip.general_status") == 0):
        length = buf[o]
        if o + 1 + length > end:
            return "identity-truncated"
        ev["enip.identity.product_name"] = _text(buf[o + 1:o + 1 + length])
    return None


def _modbus_read_reply(buf: bytes, o: int, end: int, ev: Event, req: Event | None) -> str | None:
    if o < end and "registers" in ev["ics.function"]:
        count = min((end - o) // 2, MAX_VALUES)
        if count:
            ev["ics.values"] = list(_unpack_values("H", count, buf, o))
    return None


def _no_reply_data(buf: bytes, o: int, end: int, ev: Event, req: Event | None) -> str | None:
    return None


_REPLY_PARSERS: dict[int, Callable[[bytes, int, int, Event, Event | None], str | None]] = {
    _READ_TAG: _read_tag_reply,
    _READ_FRAG: _read_tag_reply,
    _PCCC_KIND: _pccc_reply,
    _GET_ALL: _get_all_reply,
    _GET_SINGLE: _get_single_reply,
    _MODBUS_READ: _modbus_read_reply,
}

# -- detection ------------------------------------------------------------------------------------


def _plausible_header(buf: bytes, off: int, n: int, strict: bool) -> bool:
    """Known command, options 0, status small, and a length its command can have."""
    cmd, length, session, status, _ctx, options = _HDR.unpack_from(buf, off)
    if cmd not in _COMMANDS or options != 0 or status > 0xFF:
        return False
    if cmd == 0x0065:
        return length == 4
    if cmd in (0x006F, 0x0070):
        if length < 8:
            return False
        if off + 30 <= n and buf[off + 24:off + 28] != b"\x00\x00\x00\x00":  # interface handle: CIP is 0
            return False
        return True
    if cmd in (0x0066, 0x0000):
        return not strict and length < 4096
    return length < 4096


def _is_io(buf: bytes) -> bool:
    """A connected I/O datagram: CPF with a sequenced (or connected) address item, then connected data."""
    n = len(buf)
    if n < 12 or buf[1] != 0 or not 2 <= buf[0] <= 4:
        return False
    t1, l1 = _U16U16.unpack_from(buf, 2)
    if not ((t1 == 0x8002 and l1 == 8) or (t1 == 0x00A1 and l1 == 4)):
        return False
    o = 6 + l1
    if o + 4 > n:
        return False
    t2, l2 = _U16U16.unpack_from(buf, o)
    return t2 == 0x00B1 and (o + 4 + l2 == n or buf[0] > 2 and o + 4 + l2 < n)


def probe(payload: bytes, to_server: bool) -> bool:
    """Whole, plausible encapsulation messages (the last may be cut by the segment end), or one I/O datagram.

    The header must name a known command with options 0, a small status and a length its command
    can have (RegisterSession 4, SendRRData/SendUnitData at least 8 with the CIP interface handle 0);
    NOP and UnRegisterSession alone do not count, being 24 bytes of mostly zeros.
    """
    n = len(payload)
    if n < _HEADER_SIZE:
        return _is_io(payload)
    off = 0
    for _ in range(8):
        if n - off < _HEADER_SIZE:  # after whole messages, the start of the next one
            return off > 0 and (n - off < 2 or payload[off] | payload[off + 1] << 8 in _COMMANDS)
        if not _plausible_header(payload, off, n, strict=off == 0):
            return off == 0 and _is_io(payload)
        end = off + _HEADER_SIZE + (payload[off + 2] | payload[off + 3] << 8)
        if end >= n:
            return end == n or off > 0 or n - off >= 32
        off = end
    return True


def port_probe(payload: bytes, to_server: bool) -> bool:
    """On the EtherNet/IP ports: an encapsulation header of any known command, or an I/O datagram."""
    if len(payload) >= _HEADER_SIZE and _plausible_header(payload, 0, len(payload), strict=False):
        return True
    return _is_io(payload) or probe(payload, to_server)


# -- the per-flow session ---------------------------------------------------------------------------


class _IoCounter:
    """One connected I/O connection's counts over the current summary window."""

    __slots__ = ("connection", "to_server", "start", "last", "packets", "bytes", "first_seq", "last_seq", "lost",
                 "repeated", "min_len", "max_len", "anomalies")

    def __init__(self, connection: int, to_server: bool, ts: float) -> None:
        self.connection = connection
        self.to_server = to_server
        self.start = self.last = ts
        self.packets = self.bytes = self.lost = self.repeated = self.anomalies = 0
        self.first_seq = self.last_seq = -1
        self.min_len = 1 << 30
        self.max_len = 0


class EnipSession(FramedSession):
    """Per-flow state: stream buffers, the registered session, pending requests, connections, I/O counters."""

    __slots__ = ("_bad", "_confirmed", "_io", "_pending", "_npending", "_paths", "_session_handle", "_connections",
                 "_io_counters", "_io_overflow", "io_packets", "max_outstanding", "timeout", "io_interval")

    frame_name = "encapsulation header"
    max_resync = MAX_BUFFER

    def __init__(self, max_outstanding: int = MAX_OUTSTANDING, timeout: float = PAIR_TIMEOUT,
                 io_packets: bool = False, io_interval: float = IO_SUMMARY_INTERVAL) -> None:
        super().__init__({"messages": 0, "cip_services": 0, "embedded_services": 0, "embedded_omitted": 0,
                          "anomalies": 0, "paired": 0, "unpaired_responses": 0, "requests_dropped": 0,
                          "requests_timed_out": 0, "requests_unanswered": 0, "function_mismatch": 0,
                          "io_packets": 0, "io_summaries": 0, "io_lost": 0, "io_connections_overflow": 0})
        self._bad = 0  # implausible headers in a row
        self._confirmed = False  # one plausible message seen: the flow is EtherNet/IP
        self._io = False  # a connected I/O flow (UDP 2222): datagrams are CPF lists without header
        # pairing key -> [(time, request node), ...] in arrival order
        self._pending: dict[Any, list[tuple[float, tuple[Any, ...]]]] = {}
        self._npending = 0
        self._paths: dict[bytes, _Path] = {}
        self._session_handle = 0
        self._connections: dict[int, str] = {}  # connection id -> route (``ics.unit``) from Forward Open
        self._io_counters: dict[int, _IoCounter] = {}
        self._io_overflow: _IoCounter | None = None
        self.io_packets = io_packets
        self.max_outstanding = max_outstanding
        self.timeout = timeout
        self.io_interval = io_interval

    # -- the Session protocol ---------------------------------------------------------------------

    def feed(self, data: bytes, to_server: bool, ts: float) -> list[Event]:
        """Encapsulation messages from the stream (or datagram); a connected I/O flow is counted instead."""
        if self._io:
            return self._io_datagram(data, to_server, ts)
        if not self._confirmed and self._violation is None and not self._buf[0 if to_server else 1] and \
                _is_io(data) and not (len(data) >= _HEADER_SIZE and _plausible_header(data, 0, len(data), True)):
            self._io = True
            return self._io_datagram(data, to_server, ts)
        return super().feed(data, to_server, ts)

    def finish(self, ts: float) -> list[Event]:
        """The flow ended: I/O counts not yet reported, and one event listing requests left unanswered."""
        events: list[Event] = []
        for counter in self._io_counters.values():
            if counter.packets:
                events.append(self._io_summary(counter))
        if self._io_overflow is not None and self._io_overflow.packets:
            events.append(self._io_summary(self._io_overflow))
        self._io_counters.clear()
        unanswered: list[str] = []
        oldest = None
        for entries in self._pending.values():
            for sent, node in entries:
                ev = node[0]
                if ev.get("enip.command") in _DISCOVERY:
                    continue
                if ts - sent > self.timeout:
                    self.stats["requests_timed_out"] += 1
                    continue
                unanswered.append(ev["ics.function"])
                oldest = sent if oldest is None or sent < oldest else oldest
        self._pending.clear()
        self._npending = 0
        if unanswered:
            self.stats["requests_unanswered"] += len(unanswered)
            names = sorted(set(unanswered))
            ev = {"event.action": "unanswered_requests", "ics.function": "unanswered_requests",
                  "ics.operation": "other", "ics.role": "request", "enip.unanswered": len(unanswered),
                  "enip.unanswered_functions": names[:MAX_UNANSWERED_LISTED],
                  "enip.request_time_ms": int((oldest or ts) * 1000.0)}
            events.append(ev)
        return events

    # -- framing ----------------------------------------------------------------------------------

    def _frames(self, data: bytes, d: int, to_server: bool, ts: float, events: list[Event]) -> int:
        n = len(data)
        off = 0
        unpack = _HDR.unpack_from
        while n - off >= _HEADER_SIZE:
            cmd, length, session, status, ctx, options = unpack(data, off)
            end = off + _HEADER_SIZE + length
            sane = cmd in _COMMANDS and not options and status <= 0xFFFF
            if not self._confirmed:
                if not _plausible_header(data, off, n, strict=False):
                    raise ProtocolViolation("not an encapsulation header", self._pos[d] + off)
            elif not sane:
                self._bad += 1
                if self._bad > MAX_BAD_MESSAGES:
                    raise ProtocolViolation(f"{MAX_BAD_MESSAGES} implausible encapsulation headers in a row",
                                            self._pos[d] + off)
            if end > n:
                break
            if sane:
                self._bad = 0
                self._confirmed = True
            self._message(data, off, end, cmd, length, session, status, ctx, options, to_server, ts, events)
            off = end
        return off

    def _find_frame(self, data: bytes, d: int) -> bytes:
        """After a gap: drop bytes up to a plausible header confirmed by the next one (or the data end)."""
        n = len(data)
        i = 0
        while i + _HEADER_SIZE <= n:
            if _plausible_header(data, i, n, strict=True):
                end = i + _HEADER_SIZE + (data[i + 2] | data[i + 3] << 8)
                if end == n or (end + _HEADER_SIZE <= n and _plausible_header(data, end, n, strict=False)):
                    return self._skip(data, d, i, found=True)
                if end > n or end + _HEADER_SIZE > n:
                    return self._skip(data, d, i, found=False)  # wait for the rest
            i += 1
        return self._skip(data, d, max(n - _HEADER_SIZE + 1, 0), found=False)

    # -- one encapsulation message ----------------------------------------------------------------

    def _message(self, buf: bytes, off: int, end: int, cmd: int, length: int, session: int, status: int,
                 ctx: bytes, options: int, to_server: bool, ts: float, events: list[Event]) -> None:
        stats = self.stats
        stats["messages"] += 1
        entry = _COMMANDS.get(cmd)
        name, operation = entry if entry else (f"unknown-{cmd}", "other")
        ev: Event = {"enip.command": cmd, "enip.command_name": name, "enip.length": length,
                     "enip.session_handle": session, "enip.status": status,
                     "enip.status_name": _ENCAP_STATUS.get(status) or f"unknown-{status}",
                     "enip.sender_context": ctx.hex(), "enip.options": options,
                     "event.action": name, "ics.function": name, "ics.operation": operation,
                     "ics.role": "request" if to_server else "response"}
        first = len(events)
        if entry is None:
            _flag(ev, "unknown-command")
        if options:
            _flag(ev, "nonzero-options")
        if status > 0xFFFF:
            _flag(ev, "implausible-status")
        o = off + _HEADER_SIZE
        if cmd == 0x006F or cmd == 0x0070:
            self._send_data(buf, o, end, cmd, ctx, ev, to_server, ts, events)
        else:
            if cmd == 0x0063 or cmd == 0x0004 or cmd == 0x0064:
                if to_server:
                    if o != end:
                        _flag(ev, "request-with-data")
                elif o < end:
                    self._item_list(buf, o, end, ev)
                if cmd == 0x0063:
                    ev["ics.operation"] = "discovery" if to_server else "identity"
            elif cmd == 0x0065:
                if o + 4 <= end:
                    version, flags = _U16U16.unpack_from(buf, o)
                    ev["enip.protocol_version"] = version
                    ev["enip.option_flags"] = flags
                    if version != 1:
                        _flag(ev, "unsupported-protocol-version")
                else:
                    _flag(ev, "command-data-truncated")
                if not to_server:
                    if status == 0 and session == 0:
                        _flag(ev, "register-without-session-handle")
                    elif status == 0:
                        self._session_handle = session
                elif session:
                    _flag(ev, "session-handle-in-register-request")
            elif cmd == 0x0066:
                if to_server and self._session_handle and session != self._session_handle:
                    _flag(ev, "session-mismatch")
                if not to_server:
                    _flag(ev, "unregister-reply")
            elif cmd == 0x0000:
                if not to_server:
                    _flag(ev, "nop-from-server")
            events.append(ev)
        self._status_and_pairing(events, first, cmd, ctx, status, to_server, ts)

    def _status_and_pairing(self, events: list[Event], first: int, cmd: int, ctx: bytes, status: int,
                            to_server: bool, ts: float) -> None:
        """Encapsulation status on replies; pairing of the commands that have replies; anomaly counts."""
        ev = events[first]
        if ev["ics.role"] == "response":
            if status:
                for e in events[first:]:
                    e["ics.status"] = ev["enip.status_name"]
                    e["event.outcome"] = "failure"
            elif "ics.status" not in ev:
                ev["ics.status"] = "ok"
                ev["event.outcome"] = "success"
        if to_server and status:
            _flag(ev, "nonzero-status-in-request")
        if cmd in _REPLIED and "cip.service_code" not in ev:
            key = (cmd, ctx)
            if to_server:
                self._remember(key, ts, (ev, 0, None))
            else:
                self._pair_plain(key, ts, ev)
        stats = self.stats
        for e in events[first:]:
            if "enip.anomaly" in e:
                e["event.type"] = _ERROR_TYPE
                stats["anomalies"] += 1

    def _item_list(self, buf: bytes, o: int, end: int, ev: Event) -> None:
        """ListIdentity / ListServices / ListInterfaces replies: CPF items."""
        if o + 2 > end:
            _flag(ev, "command-data-truncated")
            return
        count = buf[o] | buf[o + 1] << 8
        ev["enip.cpf.item_count"] = count
        o += 2
        types: list[int] = []
        services: list[str] = []
        for _ in range(min(count, MAX_ITEMS)):
            if o + 4 > end:
                _flag(ev, "cpf-item-overrun")
                break
            itype, ilen = _U16U16.unpack_from(buf, o)
            o += 4
            types.append(itype)
            iend = o + ilen
            if iend > end:
                _flag(ev, "cpf-item-overrun")
                iend = end
            if itype == 0x000C and "enip.identity.vendor_id" not in ev:
                self._identity_item(buf, o, iend, ev)
            elif itype == 0x0100 and o + 20 <= iend:
                version, flags = _U16U16.unpack_from(buf, o)
                services.append(_text(buf[o + 4:o + 20].split(b"\x00", 1)[0]))
                ev.setdefault("enip.service_capabilities", []).append(flags)
                ev.setdefault("enip.service_versions", []).append(version)
            o = iend
        if count > MAX_ITEMS:
            _flag(ev, "too-many-cpf-items")
        if services:
            ev["enip.services"] = services
        ev["enip.cpf.item_types"] = tuple(types)
        if o != end:
            _flag(ev, "trailing-command-data")

    def _identity_item(self, buf: bytes, o: int, end: int, ev: Event) -> None:
        if o + 18 > end:
            _flag(ev, "identity-truncated")
            return
        ev["enip.identity.encapsulation_version"] = buf[o] | buf[o + 1] << 8
        family, port, address = _SOCKADDR.unpack_from(buf, o + 2)
        ev["enip.identity.socket_address"] = _ipv4(address)
        ev["enip.identity.socket_port"] = port
        if family != 2:
            _flag(ev, "sockaddr-family-not-inet")
        reason = _identity(buf, o + 18, end, ev)
        if reason:
            _flag(ev, reason)

    # -- SendRRData / SendUnitData ----------------------------------------------------------------

    def _send_data(self, buf: bytes, o: int, end: int, cmd: int, ctx: bytes, ev: Event, to_server: bool,
                   ts: float, events: list[Event]) -> None:
        session = ev["enip.session_handle"]
        if to_server:
            if not session:
                _flag(ev, "no-session-handle")
            elif self._session_handle and session != self._session_handle:
                _flag(ev, "session-mismatch")
        seq = -1
        # The usual shapes first: null address + unconnected data, connected address + connected data.
        if cmd == 0x006F and o + 16 <= end:
            iface, timeout, count, t1, l1, t2, l2 = _RR_NULL.unpack_from(buf, o)
            if count == 2 and t1 == 0 and l1 == 0 and t2 == 0x00B2 and o + 16 + l2 == end:
                ev["enip.interface_handle"] = iface
                ev["enip.timeout"] = timeout
                ev["enip.cpf.item_count"] = 2
                ev["enip.cpf.item_types"] = _NULL_UNCONNECTED
                data, data_end = o + 16, end
            else:
                data, data_end = self._cpf(buf, o, end, cmd, ev)
        elif cmd == 0x0070 and o + 22 <= end:
            iface, timeout, count, t1, l1, connection, t2, l2, seq = _RR_CONNECTED.unpack_from(buf, o)
            if count == 2 and t1 == 0x00A1 and l1 == 4 and t2 == 0x00B1 and l2 >= 2 and o + 20 + l2 == end:
                ev["enip.interface_handle"] = iface
                ev["enip.timeout"] = timeout
                ev["enip.cpf.item_count"] = 2
                ev["enip.cpf.item_types"] = _CONNECTED_PAIR
                ev["enip.connection_id"] = connection
                ev["cip.sequence_count"] = seq
                unit = self._connections.get(connection)
                if unit:
                    ev["ics.unit"] = unit
                data, data_end = o + 22, end
            else:
                seq = -1
                data, data_end = self._cpf(buf, o, end, cmd, ev)
                seq = ev.get("cip.sequence_count", -1)
        else:
            data, data_end = self._cpf(buf, o, end, cmd, ev)
            seq = ev.get("cip.sequence_count", -1)
        if ev.get("enip.interface_handle"):
            _flag(ev, "non-cip-interface")
        if data < 0 or data >= data_end:
            if data == data_end and data >= 0:
                _flag(ev, "empty-cip-message")
            events.append(ev)
            return
        key: Any = seq if cmd == 0x0070 else (cmd, ctx)
        first = len(events)
        if buf[data] & 0x80:
            taken = self._take(key, ts)
            if taken is None:
                self._cip_reply(buf, data, data_end, ev, None, 0, events, None, ts)
            else:
                self._cip_reply(buf, data, data_end, ev, taken[1], 0, events, taken[0], ts)
            if to_server:
                _flag(ev, "reply-from-client")
        else:
            node = self._cip_request(buf, data, data_end, ev, 0, events)
            if not to_server:
                _flag(ev, "request-from-server")
            self._remember(key, ts, node)
        self.stats["cip_services"] += len(events) - first

    def _cpf(self, buf: bytes, o: int, end: int, cmd: int, ev: Event) -> tuple[int, int]:
        """Any other CPF list of SendRRData/SendUnitData: every item; returns the CIP message's span."""
        if o + 8 > end:
            _flag(ev, "command-data-truncated")
            return -1, -1
        iface, timeout, count = _RR.unpack_from(buf, o)
        ev["enip.interface_handle"] = iface
        ev["enip.timeout"] = timeout
        ev["enip.cpf.item_count"] = count
        o += 8
        connection = -1
        data = data_end = -1
        types: list[int] = []
        for _ in range(count if count <= MAX_ITEMS else MAX_ITEMS):
            if o + 4 > end:
                _flag(ev, "cpf-item-overrun")
                break
            itype = buf[o] | buf[o + 1] << 8
            ilen = buf[o + 2] | buf[o + 3] << 8
            o += 4
            iend = o + ilen
            types.append(itype)
            if iend > end:
                _flag(ev, "cpf-item-overrun")
                iend = end
            if itype == 0x00B2 or itype == 0x00B1:
                if data < 0:
                    data, data_end = o, iend
            elif itype == 0x00A1:
                if ilen == 4 and o + 4 <= end:
                    connection = _U32.unpack_from(buf, o)[0]
                else:
                    _flag(ev, "bad-address-item")
            elif itype == 0x8000 or itype == 0x8001:
                if ilen == 16 and o + 8 <= end:
                    _f, port, address = _SOCKADDR.unpack_from(buf, o)
                    key = "enip.cpf.sockaddr_o_t" if itype == 0x8000 else "enip.cpf.sockaddr_t_o"
                    ev[key] = f"{_ipv4(address)}:{port}"
            elif itype not in _CPF_ITEMS:
                _flag(ev, "unknown-cpf-item")
            o = iend
        if count > MAX_ITEMS:
            _flag(ev, "too-many-cpf-items")
        ev["enip.cpf.item_types"] = tuple(types)
        if o < end and count <= MAX_ITEMS:
            _flag(ev, "trailing-command-data")
        if cmd == 0x0070:
            if connection < 0 or (types and types[-1] != 0x00B1):
                _flag(ev, "unexpected-cpf-items")
            if connection >= 0:
                ev["enip.connection_id"] = connection
                unit = self._connections.get(connection)
                if unit:
                    ev["ics.unit"] = unit
            if data >= 0:
                if data + 2 > data_end:
                    _flag(ev, "connected-data-truncated")
                    return -1, -1
                ev["cip.sequence_count"] = buf[data] | buf[data + 1] << 8
                data += 2
        elif types != [0x0000, 0x00B2] and not (count > 2 and types[:1] == [0x0000] and 0x00B2 in types):
            _flag(ev, "unexpected-cpf-items")
        return data, data_end

    # -- CIP requests -----------------------------------------------------------------------------

    def _path(self, raw: bytes) -> _Path:
        paths = self._paths
        path = paths.get(raw)
        if path is None:
            if len(paths) >= MAX_PATH_CACHE:
                paths.clear()
            path = paths[raw] = parse_path(raw)
        return path

    def _cip_request(self, buf: bytes, o: int, end: int, ev: Event, depth: int,
                     events: list[Event]) -> tuple[Any, ...]:
        """Decode one CIP request into ``ev`` (appended to ``events``, its embedded ones after it).

        Returns the pairing node: (event, kind, inner, path fields) with inner None, a list of nodes
        (Multiple Service Packet) or one node (Unconnected Send).
        """
        events.append(ev)
        code = buf[o] & 0x7F
        ev["cip.service_code"] = code
        ev["ics.role"] = "request"
        if o + 2 > end:
            name, operation, _kind = _SERVICES[code]
            ev["cip.service"] = ev["event.action"] = ev["ics.function"] = name
            ev["ics.operation"] = operation
            _flag(ev, "cip-request-truncated")
            return (ev, _PLAIN, None, _NO_FIELDS)
        p_end = o + 2 + 2 * buf[o + 1]
        if p_end > end:
            _flag(ev, "path-size-beyond-data")
            p_end = end
        path = self._path(buf[o + 2:p_end])
        fields = path.fields
        if fields:
            ev.update(fields)
        if path.anomaly:
            _flag(ev, path.anomaly)
        if 0x4B <= code <= 0x63:
            table = _CLASS_SERVICES.get(path.cls)
            entry = None
            if table is not None:
                entry = table.get(code)
            elif path.symbolic:
                entry = _LOGIX_TAG_SERVICES.get(code)
            if entry is None:
                entry = _SERVICES[code]
        else:
            entry = _SERVICES[code]
        name, operation, kind = entry
        ev["cip.service"] = ev["event.action"] = ev["ics.function"] = name
        ev["ics.operation"] = operation
        body = p_end
        ev["cip.data_length"] = end - body
        if kind == _PLAIN:
            if code not in _COMMON and not 0x32 <= code <= 0x63:
                _flag(ev, "reserved-service")
            return (ev, _PLAIN, None, fields)
        if kind == _MSP:
            return (ev, _MSP, self._msp_request(buf, body, end, ev, depth, events), fields)
        if kind == _UCS_KIND:
            return (ev, _UCS_KIND, self._ucs_request(buf, body, end, ev, depth, events), fields)
        if kind == _FWD_OPEN_KIND or kind == _LARGE_OPEN_KIND:
            self._forward_open(buf, body, end, ev, kind == _LARGE_OPEN_KIND)
        elif kind == _FWD_CLOSE_KIND:
            self._forward_close(buf, body, end, ev)
        parser = _REQUEST_PARSERS.get(kind)
        if parser is not None:
            reason = parser(buf, body, end, ev)
            if reason:
                _flag(ev, reason)
        return (ev, kind, None, fields)

    def _embedded(self, ev: Event, parent: str, index: int) -> Event:
        """A new event for an embedded request or reply: the message's header fields, marked embedded."""
        inner: Event = {key: ev[key] for key in _TOP_LEVEL_HEADER if key in ev}
        inner["ics.role"] = ev["ics.role"]
        if "ics.unit" in ev:
            inner["ics.unit"] = ev["ics.unit"]
        inner["cip.embedded"] = True
        inner["cip.parent_service"] = parent
        if index >= 0:
            inner["cip.index"] = index
        return inner

    def _msp_offsets(self, buf: bytes, o: int, end: int, ev: Event) -> list[tuple[int, int]]:
        """Multiple Service Packet body: count, offsets (from the count field), the services between them."""
        if o + 2 > end:
            _flag(ev, "msp-truncated")
            return []
        count = buf[o] | buf[o + 1] << 8
        ev["cip.service_count"] = count
        if o + 2 + 2 * count > end:
            _flag(ev, "msp-offsets-beyond-data")
            count = (end - o - 2) // 2
        offsets = struct.unpack_from(f"<{count}H", buf, o + 2) if count else ()
        spans: list[tuple[int, int]] = []
        table_end = 2 + 2 * count
        for k, rel in enumerate(offsets):
            nxt = offsets[k + 1] if k + 1 < count else end - o
            if rel < table_end or rel > end - o:
                _flag(ev, "msp-invalid-offset")
                break
            if nxt > end - o or nxt < rel:  # the next offset is wrong: this service runs to the end
                _flag(ev, "msp-invalid-offset")
                spans.append((o + rel, end))
                break
            spans.append((o + rel, o + nxt))
        if len(spans) > MAX_EMBEDDED:
            ev["cip.services_omitted"] = len(spans) - MAX_EMBEDDED
            self.stats["embedded_omitted"] += len(spans) - MAX_EMBEDDED
            del spans[MAX_EMBEDDED:]
        return spans

    def _msp_request(self, buf: bytes, o: int, end: int, ev: Event, depth: int,
                     events: list[Event]) -> list[tuple[Any, ...]] | None:
        spans = self._msp_offsets(buf, o, end, ev)
        if depth >= MAX_DEPTH:
            _flag(ev, "nesting-too-deep")
            return None
        nodes: list[tuple[Any, ...]] = []
        operations: set[str] = set()
        for k, (start, stop) in enumerate(spans):
            inner = self._embedded(ev, "multiple_service_packet", k)
            if start >= stop:
                inner["cip.service"] = inner["event.action"] = inner["ics.function"] = "empty_message"
                inner["ics.operation"] = "other"
                _flag(inner, "empty-cip-message")
                events.append(inner)
                nodes.append((inner, _PLAIN, None, _NO_FIELDS))
                continue
            nodes.append(self._cip_request(buf, start, stop, inner, depth + 1, events))
            operations.add(inner["ics.operation"])
            if buf[start] & 0x80:
                _flag(inner, "reply-in-request")
        self.stats["embedded_services"] += len(nodes)
        if len(operations) == 1:
            ev["ics.operation"] = operations.pop()
        return nodes

    def _ucs_request(self, buf: bytes, o: int, end: int, ev: Event, depth: int,
                     events: list[Event]) -> tuple[Any, ...] | None:
        """Unconnected Send: priority/tick time, timeout ticks, the embedded request, the route path."""
        if o + 4 > end:
            _flag(ev, "unconnected-send-truncated")
            return None
        _tick, ticks, size = _UCS.unpack_from(buf, o)
        ev["cip.timeout_ticks"] = ticks
        message = o + 4
        stop = message + size
        if stop > end:
            _flag(ev, "unconnected-send-truncated")
            stop = end
        route = stop + (size & 1)
        if route + 2 <= end:
            words = buf[route]
            r_end = route + 2 + 2 * words
            if r_end > end:
                _flag(ev, "route-path-truncated")
            route_path = self._path(buf[route + 2:min(r_end, end)])
            if route_path.route:
                ev["cip.route"] = ev["ics.unit"] = route_path.route
            if route_path.anomaly:
                _flag(ev, route_path.anomaly)
        else:
            _flag(ev, "route-path-truncated")
        if depth >= MAX_DEPTH:
            _flag(ev, "nesting-too-deep")
            return None
        if message >= stop:
            _flag(ev, "empty-cip-message")
            return None
        inner = self._embedded(ev, "unconnected_send", -1)
        if "cip.route" in ev:
            inner["ics.unit"] = ev["cip.route"]
        node = self._cip_request(buf, message, stop, inner, depth + 1, events)
        if buf[message] & 0x80:
            _flag(inner, "reply-in-request")
        self.stats["embedded_services"] += 1
        if "cip.route" in ev:
            inner["cip.route"] = inner["ics.unit"] = ev["cip.route"]
        ev["ics.operation"] = inner["ics.operation"]
        return node

    def _forward_open(self, buf: bytes, o: int, end: int, ev: Event, large: bool) -> None:
        layout = _LARGE_FWD_OPEN if large else _FWD_OPEN
        if o + layout.size + 1 > end:
            _flag(ev, "forward-open-truncated")
            return
        (_tick, ticks, ot_id, to_id, serial, vendor, orig_serial, multiplier, ot_rpi, ot_params, to_rpi, to_params,
         trigger) = layout.unpack_from(buf, o)
        ev["cip.cm.timeout_ticks"] = ticks
        ev["cip.cm.ot_connection_id"] = ot_id
        ev["cip.cm.to_connection_id"] = to_id
        ev["cip.cm.connection_serial"] = serial
        ev["cip.cm.originator_vendor_id"] = vendor
        ev["cip.cm.originator_serial"] = orig_serial
        ev["cip.cm.timeout_multiplier"] = multiplier
        ev["cip.cm.ot_rpi_us"] = ot_rpi
        ev["cip.cm.to_rpi_us"] = to_rpi
        ev["cip.cm.ot_size"], ev["cip.cm.ot_type"], ev["cip.cm.ot_priority"] = _net_params(ot_params, large)
        ev["cip.cm.to_size"], ev["cip.cm.to_type"], ev["cip.cm.to_priority"] = _net_params(to_params, large)
        ev["cip.cm.transport_class"] = trigger & 0x0F
        production = (trigger >> 4) & 7
        ev["cip.cm.trigger"] = _TRIGGERS[production] if production < 3 else f"unknown-{production}"
        ev["cip.cm.direction"] = "server" if trigger & 0x80 else "client"
        ev["cip.cm.large"] = large
        p = o + layout.size
        words = buf[p]
        self._connection_path(buf, p + 1, min(p + 1 + 2 * words, end), ev)
        if p + 1 + 2 * words != end:
            _flag(ev, "connection-path-size-mismatch")

    def _forward_close(self, buf: bytes, o: int, end: int, ev: Event) -> None:
        if o + _FWD_CLOSE.size > end:
            _flag(ev, "forward-close-truncated")
            return
        _tick, ticks, serial, vendor, orig_serial, words, _reserved = _FWD_CLOSE.unpack_from(buf, o)
        ev["cip.cm.timeout_ticks"] = ticks
        ev["cip.cm.connection_serial"] = serial
        ev["cip.cm.originator_vendor_id"] = vendor
        ev["cip.cm.originator_serial"] = orig_serial
        p = o + _FWD_CLOSE.size
        self._connection_path(buf, p, min(p + 2 * words, end), ev)
        if p + 2 * words != end:
            _flag(ev, "connection-path-size-mismatch")

    def _connection_path(self, buf: bytes, o: int, end: int, ev: Event) -> None:
        path = self._path(buf[o:end])
        fields = path.fields
        if "cip.path" in fields:
            ev["cip.cm.connection_path"] = fields["cip.path"]
        if path.classes:
            ev["cip.cm.connection_class"] = path.classes
        if path.route:
            ev["cip.route"] = ev["ics.unit"] = path.route
        if path.anomaly:
            _flag(ev, path.anomaly)

    # -- CIP replies ------------------------------------------------------------------------------

    def _cip_reply(self, buf: bytes, o: int, end: int, ev: Event, node: tuple[Any, ...] | None, depth: int,
                   events: list[Event], sent: float | None, ts: float) -> None:
        """Decode one CIP reply into ``ev``; ``node`` is the paired request (None: unpaired)."""
        events.append(ev)
        code = buf[o] & 0x7F
        ev["ics.role"] = "response"
        req = node[0] if node is not None else None
        kind = node[1] if node is not None else _PLAIN
        if node is not None and kind == _UCS_KIND and (code != 0x52 or self._ucs_reply_is_embedded(buf, o, end, node)):
            # Unconnected Send succeeded (or the embedded request failed): the reply is the embedded one's.
            inner = node[2]
            if inner is not None:
                node = inner
                req = inner[0]
                kind = inner[1]
                if "cip.route" in node[0]:
                    ev["cip.route"] = ev["ics.unit"] = node[0]["cip.route"]
        if req is not None and req.get("cip.service_code") != code:
            self.stats["function_mismatch"] += 1
            _flag(ev, "reply-service-mismatch")
            req, kind, node = None, _PLAIN, None
        ev["cip.service_code"] = code
        if req is not None:
            fields = node[3]  # type: ignore[index]
            if fields:
                ev.update(fields)
            for key in _KIND_INHERIT[kind]:
                if key in req:
                    ev[key] = req[key]
            name = req["cip.service"]
            ev["ics.operation"] = req["ics.operation"]
            self.stats["paired"] += 1
            if sent is not None:
                ev["enip.request_time_ms"] = int(sent * 1000.0)
                ev["enip.response_time_ms"] = round((ts - sent) * 1000.0, 3)
        else:
            name, operation, kind = _SERVICES[code]
            ev["ics.operation"] = operation
            if depth == 0:
                self.stats["unpaired_responses"] += 1
        ev["cip.service"] = ev["event.action"] = ev["ics.function"] = name
        if o + 4 > end:
            _flag(ev, "cip-reply-truncated")
            return
        status = buf[o + 2]
        words = buf[o + 3]
        if buf[o + 1]:
            _flag(ev, "reply-reserved-nonzero")
        ev["cip.general_status"] = status
        ev["cip.status"] = STATUS_NAMES[status]
        body = o + 4 + 2 * words
        if body > end:
            _flag(ev, "additional-status-truncated")
            body = end
            words = (end - o - 4) // 2
        if words:
            extended = struct.unpack_from(f"<{words}H", buf, o + 4)
            ev["cip.extended_status"] = extended
            if status == 0x01:
                ev["cip.extended_status_name"] = _CM_EXTENDED.get(extended[0]) or f"unknown-{extended[0]}"
        partial = status == 0x06 and kind in (_READ_FRAG, _WRITE_FRAG, _READ_TAG, _MSP)
        if status == 0 or partial:
            ev["ics.status"] = "ok"
            ev["event.outcome"] = "success"
        else:
            ev["ics.status"] = STATUS_NAMES[status]
            ev["event.outcome"] = "failure"
        ev["cip.data_length"] = end - body
        if kind == _MSP or (req is None and code == 0x0A):
            self._msp_reply(buf, body, end, ev, node, depth, events, sent, ts)
        elif kind == _FWD_OPEN_KIND or kind == _LARGE_OPEN_KIND:
            self._forward_open_reply(buf, body, end, ev, status)
        elif kind == _FWD_CLOSE_KIND:
            self._forward_close_reply(buf, body, end, ev, status)
        elif kind == _UCS_KIND:
            if body < end:
                ev["cip.cm.remaining_path_size"] = buf[body]
        else:
            parser = _REPLY_PARSERS.get(kind)
            if parser is not None:
                reason = parser(buf, body, end, ev, req)
                if reason:
                    _flag(ev, reason)

    @staticmethod
    def _ucs_reply_is_embedded(buf: bytes, o: int, end: int, node: tuple[Any, ...]) -> bool:
        """A 0xD2 reply to Unconnected Send is the embedded Read Tag Fragmented's when that was embedded."""
        inner = node[2]
        return inner is not None and inner[0].get("cip.service_code") == 0x52

    def _msp_reply(self, buf: bytes, o: int, end: int, ev: Event, node: tuple[Any, ...] | None, depth: int,
                   events: list[Event], sent: float | None, ts: float) -> None:
        if o >= end:
            return  # an error reply without the list
        spans = self._msp_offsets(buf, o, end, ev)
        inner_nodes = node[2] if node is not None and node[2] is not None else None
        if inner_nodes is not None and len(inner_nodes) != ev.get("cip.service_count", 0) and \
                len(inner_nodes) != len(spans):
            _flag(ev, "msp-reply-count-mismatch")
        if depth >= MAX_DEPTH:
            _flag(ev, "nesting-too-deep")
            return
        for k, (start, stop) in enumerate(spans):
            inner = self._embedded(ev, "multiple_service_packet", k)
            if start >= stop:
                inner["cip.service"] = inner["event.action"] = inner["ics.function"] = "empty_message"
                inner["ics.operation"] = "other"
                _flag(inner, "empty-cip-message")
                events.append(inner)
                continue
            child = inner_nodes[k] if inner_nodes is not None and k < len(inner_nodes) else None
            if not buf[start] & 0x80:
                _flag(inner, "request-in-reply")
            self._cip_reply(buf, start, stop, inner, child, depth + 1, events, sent, ts)
        self.stats["embedded_services"] += len(spans)
        operations = {e["ics.operation"] for e in events[-len(spans):]} if spans else set()
        if len(operations) == 1 and node is None:
            ev["ics.operation"] = operations.pop()

    def _forward_open_reply(self, buf: bytes, o: int, end: int, ev: Event, status: int) -> None:
        if status == 0:
            if o + _FWD_OPEN_REPLY.size > end:
                _flag(ev, "forward-open-truncated")
                return
            ot_id, to_id, serial, vendor, orig_serial, ot_api, to_api, size, _r = _FWD_OPEN_REPLY.unpack_from(buf, o)
            ev["cip.cm.ot_connection_id"] = ot_id
            ev["cip.cm.to_connection_id"] = to_id
            ev["cip.cm.connection_serial"] = serial
            ev["cip.cm.originator_vendor_id"] = vendor
            ev["cip.cm.originator_serial"] = orig_serial
            ev["cip.cm.ot_api_us"] = ot_api
            ev["cip.cm.to_api_us"] = to_api
            if o + _FWD_OPEN_REPLY.size + 2 * size != end:
                _flag(ev, "application-reply-size-mismatch")
            unit = ev.get("cip.route") or ev.get("ics.unit") or ""
            connections = self._connections
            if len(connections) >= MAX_CONNECTIONS:
                del connections[next(iter(connections))]
            connections[ot_id] = unit
            if to_id != ot_id:
                connections[to_id] = unit
        elif o + 10 <= end:
            serial, vendor, orig_serial, remaining, _r = _FWD_CLOSE_REPLY.unpack_from(buf, o)
            ev["cip.cm.connection_serial"] = serial
            ev["cip.cm.originator_vendor_id"] = vendor
            ev["cip.cm.originator_serial"] = orig_serial
            ev["cip.cm.remaining_path_size"] = remaining

    def _forward_close_reply(self, buf: bytes, o: int, end: int, ev: Event, status: int) -> None:
        if o + _FWD_CLOSE_REPLY.size > end:
            if status == 0:
                _flag(ev, "forward-close-truncated")
            return
        serial, vendor, orig_serial, size, _r = _FWD_CLOSE_REPLY.unpack_from(buf, o)
        ev["cip.cm.connection_serial"] = serial
        ev["cip.cm.originator_vendor_id"] = vendor
        ev["cip.cm.originator_serial"] = orig_serial
        if status:
            ev["cip.cm.remaining_path_size"] = size
        elif o + _FWD_CLOSE_REPLY.size + 2 * size != end:
            _flag(ev, "application-reply-size-mismatch")

    # -- pairing ----------------------------------------------------------------------------------

    def _remember(self, key: Any, ts: float, node: tuple[Any, ...]) -> None:
        pending = self._pending
        if self._npending:
            oldest_key = next(iter(pending))
            entries = pending[oldest_key]
            if ts - entries[0][0] > self.timeout:
                self._drop(oldest_key, entries)
                self.stats["requests_timed_out"] += 1
            elif self._npending >= self.max_outstanding:
                self._drop(oldest_key, entries)
                self.stats["requests_dropped"] += 1
        entries = pending.get(key)
        if entries is None:
            pending[key] = [(ts, node)]
        else:
            entries.append((ts, node))
        self._npending += 1

    def _drop(self, key: Any, entries: list[tuple[float, tuple[Any, ...]]]) -> None:
        del entries[0]
        if not entries:
            del self._pending[key]
        self._npending -= 1

    def _take(self, key: Any, ts: float) -> tuple[float, tuple[Any, ...]] | None:
        entries = self._pending.get(key)
        if entries is None:
            return None
        sent, node = entries[0]
        self._drop(key, entries)
        if ts - sent > self.timeout:
            self.stats["requests_timed_out"] += 1
            return None
        return sent, node

    def _pair_plain(self, key: Any, ts: float, ev: Event) -> None:
        taken = self._take(key, ts)
        if taken is None:
            self.stats["unpaired_responses"] += 1
            return
        sent, node = taken
        self.stats["paired"] += 1
        ev["enip.request_time_ms"] = int(sent * 1000.0)
        ev["enip.response_time_ms"] = round((ts - sent) * 1000.0, 3)

    # -- connected I/O ----------------------------------------------------------------------------

    def _io_datagram(self, data: bytes, to_server: bool, ts: float) -> list[Event]:
        stats = self.stats
        stats["io_packets"] += 1
        n = len(data)
        reason: str | None = None
        connection = seq = -1
        length = 0
        if n < 6:
            reason = "io-truncated"
        else:
            count = data[0] | data[1] << 8
            t1 = data[2] | data[3] << 8
            l1 = data[4] | data[5] << 8
            o = 6 + l1
            if count < 2 or count > MAX_ITEMS:
                reason = "io-item-count"
            if t1 == 0x8002 and l1 == 8 and o <= n:
                connection, seq = _U32U32.unpack_from(data, 6)
            elif t1 == 0x00A1 and l1 == 4 and o <= n:
                connection = _U32.unpack_from(data, 6)[0]
            else:
                reason = "io-address-item"
            if o + 4 <= n and (data[o] | data[o + 1] << 8) == 0x00B1:
                length = data[o + 2] | data[o + 3] << 8
                if o + 4 + length > n:
                    reason = reason or "io-item-overrun"
                    length = n - o - 4
                elif o + 4 + length < n and count == 2:
                    reason = reason or "io-trailing-data"
            elif reason is None:
                reason = "io-data-item"
        events: list[Event] = []
        if connection >= 0:
            counter = self._io_counters.get(connection)
            if counter is None:
                if len(self._io_counters) < MAX_IO_CONNECTIONS:
                    counter = self._io_counters[connection] = _IoCounter(connection, to_server, ts)
                else:
                    stats["io_connections_overflow"] += 1
                    counter = self._io_overflow
                    if counter is None:
                        counter = self._io_overflow = _IoCounter(-1, to_server, ts)
            elif ts - counter.start >= self.io_interval and counter.packets:
                events.append(self._io_summary(counter))
                counter.start = ts
            self._io_count(counter, seq, length, ts, reason is not None)
        if reason is not None or self.io_packets:
            ev: Event = {"event.action": "cyclic_io", "ics.function": "cyclic_io", "ics.operation": "report",
                         "ics.role": "unsolicited", "enip.io.data_length": length}
            if connection >= 0:
                ev["enip.connection_id"] = connection
            if seq >= 0:
                ev["enip.sequence_number"] = seq
            if reason is not None:
                ev["enip.anomaly"] = [reason]
                ev["event.type"] = _ERROR_TYPE
                stats["anomalies"] += 1
            else:
                ev["ics.status"] = "ok"
            events.append(ev)
        return events

    def _io_count(self, c: _IoCounter, seq: int, length: int, ts: float, bad: bool) -> None:
        c.packets += 1
        c.bytes += length
        c.last = ts
        if bad:
            c.anomalies += 1
        if length < c.min_len:
            c.min_len = length
        if length > c.max_len:
            c.max_len = length
        if seq < 0 or c.connection < 0:
            return
        last = c.last_seq
        if last >= 0 and seq != (last + 1) & 0xFFFFFFFF:
            ahead = (seq - last) & 0xFFFFFFFF
            if ahead < 0x80000000:
                c.lost += ahead - 1
                self.stats["io_lost"] += ahead - 1
            else:
                c.repeated += 1
                return  # an old number: keep expecting the one after the newest
        if c.first_seq < 0:
            c.first_seq = seq
        c.last_seq = seq

    def _io_summary(self, c: _IoCounter) -> Event:
        self.stats["io_summaries"] += 1
        duration = c.last - c.start
        ev: Event = {"event.action": "cyclic_io", "ics.function": "cyclic_io", "ics.operation": "report",
                     "ics.role": "unsolicited", "ics.status": "ok", "event.outcome": "success",
                     "enip.io.packets": c.packets, "enip.io.bytes": c.bytes,
                     "enip.io.data_length_min": c.min_len, "enip.io.data_length_max": c.max_len,
                     "enip.io.start_ms": int(c.start * 1000.0), "enip.io.duration_s": round(duration, 6)}
        if c.connection >= 0:
            ev["enip.connection_id"] = c.connection
            ev["ics.tag"] = (f"connection:0x{c.connection:08x}",)
        else:
            ev["enip.io.connections_overflow"] = True
        if c.first_seq >= 0:
            ev["enip.io.first_sequence"] = c.first_seq
            ev["enip.io.last_sequence"] = c.last_seq
            ev["enip.io.lost"] = c.lost
            ev["enip.io.repeated"] = c.repeated
        if c.packets > 1 and duration > 0:
            ev["enip.io.interval_ms"] = round(duration * 1000.0 / (c.packets - 1), 3)
        if c.anomalies:
            ev["enip.io.anomalies"] = c.anomalies
        c.packets = c.bytes = c.lost = c.repeated = c.anomalies = 0
        c.first_seq = -1  # the next window starts at its first packet; gaps across the boundary still count
        c.min_len = 1 << 30
        c.max_len = 0
        return ev


# -- registration ---------------------------------------------------------------------------------


def _operations() -> dict[str, str]:
    """Function name -> ics.operation.

    Encapsulation commands first, then CIP services: the common ones, then the class-specific ones
    by class. ``list_identity`` is discovery when asked and identity when answered. A Multiple
    Service Packet and an Unconnected Send take the operation of the requests they carry when
    those agree (the rows give the fallback). ``execute_pccc/<function>`` rows give the operation
    of each PCCC command an Execute PCCC (or Execute Local PCCC) carries.
    """
    table: dict[str, str] = {}
    for code in sorted(_COMMANDS):
        name, operation = _COMMANDS[code]
        table[name] = operation
    table["list_identity/response"] = "identity"
    for code in sorted(_COMMON):
        name, operation, _ = _COMMON[code]
        table[name] = operation
    for cls in sorted(_CLASS_SERVICES):
        for code in sorted(_CLASS_SERVICES[cls]):
            name, operation, _ = _CLASS_SERVICES[cls][code]
            table.setdefault(name, operation)
    for key in _PCCC:
        name, operation = _PCCC[key]
        table[f"execute_pccc/{name}"] = operation
    table["cyclic_io"] = "report"
    table["unanswered_requests"] = "other"
    table["empty_message"] = "other"
    table["vendor_specific-<n>"] = "other"
    table["class_specific-<n>"] = "other"
    table["unknown-<n>"] = "other"
    return table


OPERATIONS = _operations()


def _fields() -> tuple[Field, ...]:
    F = Field
    return (
        # encapsulation header and command data
        F("enip.command", "integer", "Encapsulation command code (0x65 RegisterSession, 0x6F SendRRData, 0x70"
          " SendUnitData, 0x63 ListIdentity...)."),
        F("enip.command_name", "keyword", "Encapsulation command name: nop, list_services, list_identity,"
          " list_interfaces, register_session, unregister_session, send_rr_data, send_unit_data,"
          " indicate_status, cancel, or `unknown-<n>`."),
        F("enip.length", "integer", "Encapsulation header length: bytes of command data after the 24-byte"
          " header."),
        F("enip.session_handle", "long", "Session handle (assigned by the target in the RegisterSession"
          " reply, 0 before)."),
        F("enip.status", "long", "Encapsulation status (0 success)."),
        F("enip.status_name", "keyword", "Encapsulation status name: success, invalid_command,"
          " insufficient_memory, incorrect_data, invalid_session_handle, invalid_length,"
          " unsupported_protocol_version, encapsulated_cip_service_not_allowed, or `unknown-<n>`."),
        F("enip.sender_context", "keyword", "Sender context, 8 bytes in hexadecimal (echoed by the reply)."),
        F("enip.options", "long", "Encapsulation options (0)."),
        F("enip.interface_handle", "long", "SendRRData/SendUnitData interface handle (0 for CIP)."),
        F("enip.timeout", "integer", "SendRRData/SendUnitData timeout in seconds."),
        F("enip.protocol_version", "integer", "RegisterSession protocol version (1)."),
        F("enip.option_flags", "integer", "RegisterSession option flags (0)."),
        F("enip.cpf.item_count", "integer", "Common Packet Format item count."),
        F("enip.cpf.item_types", "integer", "Type ids of the CPF items (0x00 null address, 0xA1 connected"
          " address, 0xB1 connected data, 0xB2 unconnected data, 0x0C identity, 0x100 services,"
          " 0x8000/0x8001 socket address, 0x8002 sequenced address), at most 16.", array=True),
        F("enip.cpf.sockaddr_o_t", "keyword", "Socket address info item O->T (`a.b.c.d:port`)."),
        F("enip.cpf.sockaddr_t_o", "keyword", "Socket address info item T->O (`a.b.c.d:port`)."),
        F("enip.connection_id", "long", "Connection id of the connected address item (SendUnitData) or of"
          " the sequenced address item (connected I/O)."),
        F("enip.sequence_number", "long", "Connected I/O packet events: the 32-bit encapsulation sequence"
          " number of the sequenced address item."),
        F("enip.services", "keyword", "ListServices reply: service names (`Communications`).", array=True),
        F("enip.service_capabilities", "integer", "ListServices reply: capability flags per service (0x20"
          " CIP over TCP, 0x100 class 0/1 over UDP).", array=True),
        F("enip.service_versions", "integer", "ListServices reply: protocol version per service.", array=True),
        F("enip.identity.encapsulation_version", "integer", "ListIdentity: encapsulation protocol version."),
        F("enip.identity.socket_address", "ip", "ListIdentity: the device's IPv4 address (sin_addr)."),
        F("enip.identity.socket_port", "integer", "ListIdentity: the device's TCP port (sin_port)."),
        F("enip.identity.vendor_id", "integer", "Identity vendor id (ListIdentity reply, or an Identity"
          " object Get_Attributes_All reply)."),
        F("enip.identity.vendor_name", "keyword", "Vendor name for common vendors (`Rockwell"
          " Automation/Allen-Bradley`), else `unknown-<n>`."),
        F("enip.identity.device_type", "integer", "Identity device type (12 communications adapter, 14"
          " PLC...)."),
        F("enip.identity.device_type_name", "keyword", "Device type name, e.g."
          " `programmable_logic_controller`, or `unknown-<n>`."),
        F("enip.identity.product_code", "integer", "Identity product code."),
        F("enip.identity.revision", "keyword", "Identity revision `major.minor`."),
        F("enip.identity.revision_major", "short", "Identity major revision."),
        F("enip.identity.revision_minor", "short", "Identity minor revision."),
        F("enip.identity.status", "integer", "Identity status word."),
        F("enip.identity.status_flags", "keyword", "Identity status bits set: owned, configured,"
          " minor/major recoverable/unrecoverable fault.", array=True),
        F("enip.identity.serial_number", "long", "Identity serial number."),
        F("enip.identity.serial", "keyword", "Identity serial number as 8 hexadecimal digits (`0x00524d8e`)."),
        F("enip.identity.product_name", "keyword", "Identity product name (also from Get_Attribute_Single of"
          " Identity attribute 7)."),
        F("enip.identity.state", "short", "Identity state (3 operational)."),
        F("enip.identity.state_name", "keyword", "Identity state name: nonexistent, self_testing, standby,"
          " operational, major_recoverable_fault, major_unrecoverable_fault, default."),
        F("enip.request_time_ms", "date", "Replies: capture time of the paired request (epoch milliseconds);"
          " the unanswered-requests event: the oldest of them."),
        F("enip.response_time_ms", "double", "Replies: milliseconds since the paired request."),
        F("enip.unanswered", "integer", "Flow end: requests that never got a reply (discovery requests"
          " excepted)."),
        F("enip.unanswered_functions", "keyword", "Flow end: the functions of the unanswered requests (at"
          " most 16).", array=True),
        F("enip.io.packets", "long", "Connected I/O summary: packets of the connection in the window."),
        F("enip.io.bytes", "long", "Connected I/O summary: bytes of connected data in the window."),
        F("enip.io.data_length", "integer", "Connected I/O packet events: bytes of connected data."),
        F("enip.io.data_length_min", "integer", "Connected I/O summary: smallest connected data item."),
        F("enip.io.data_length_max", "integer", "Connected I/O summary: largest connected data item."),
        F("enip.io.first_sequence", "long", "Connected I/O summary: first encapsulation sequence number."),
        F("enip.io.last_sequence", "long", "Connected I/O summary: last encapsulation sequence number."),
        F("enip.io.lost", "long", "Connected I/O summary: sequence numbers skipped (packets lost or not"
          " captured)."),
        F("enip.io.repeated", "long", "Connected I/O summary: packets with an old sequence number (duplicated"
          " or reordered)."),
        F("enip.io.start_ms", "date", "Connected I/O summary: capture time the window starts (epoch ms)."),
        F("enip.io.duration_s", "double", "Connected I/O summary: seconds from the first to the last packet."),
        F("enip.io.interval_ms", "double", "Connected I/O summary: mean time between packets (the actual"
          " packet interval, compare the RPI)."),
        F("enip.io.anomalies", "long", "Connected I/O summary: malformed packets among them."),
        F("enip.io.connections_overflow", "boolean", "Connected I/O summary of the packets of connections"
          " beyond the 256 counted per flow."),
        F("enip.anomaly", "keyword", "Why the message breaks the specification although it parses (every"
          " reason found); see sensor/protocols/enip.md.", array=True),
        # CIP
        F("cip.service_code", "short", "CIP service code without the reply bit (0x4C Read Tag...)."),
        F("cip.service", "keyword", "CIP service name (`get_attribute_single`, `read_tag`, `forward_open`),"
          " resolved by the class the path addresses; `class_specific-<n>`, `vendor_specific-<n>` or"
          " `unknown-<n>` otherwise."),
        F("cip.sequence_count", "integer", "SendUnitData: connection sequence count of the connected data"
          " item (pairs a connected request with its reply)."),
        F("cip.path", "keyword", "Request path as text, e.g. `class 0x01, instance 1, attribute 7` or"
          " `symbol Tank_Level`."),
        F("cip.class", "integer", "Class ids of the request path's class segments (replies: the request's).",
          array=True),
        F("cip.class_name", "keyword", "Name of the first class, e.g. `identity`, `connection_manager`,"
          " `logix_symbol`, `pccc`; `vendor_specific-<n>` or `unknown-<n>`."),
        F("cip.instance", "long", "Instance ids of the request path.", array=True),
        F("cip.attribute", "integer", "Attribute ids of the request path and, for Get/Set_Attribute_List, the"
          " listed attributes.", array=True),
        F("cip.member", "long", "Member ids of the request path (array elements of a tag).", array=True),
        F("cip.connection_point", "long", "Connection points of the request path.", array=True),
        F("cip.symbol", "keyword", "ANSI extended symbolic segments of the request path, one per segment.",
          array=True),
        F("cip.tag", "keyword", "Symbolic tag name: the symbolic segments joined by `.`, array elements as"
          " `[n]` (`Program:Main.Values[3]`)."),
        F("cip.route", "keyword", "Port segments of an Unconnected Send route path or a Forward Open"
          " connection path, as `port,link` pairs (`1,0`: backplane, slot 0); also `ics.unit`."),
        F("cip.general_status", "short", "Replies: CIP general status (0 success)."),
        F("cip.status", "keyword", "Replies: general status name (`path_destination_unknown`...)."),
        F("cip.extended_status", "integer", "Replies: additional status words.", array=True),
        F("cip.extended_status_name", "keyword", "Connection failure (general status 1): name of the"
          " extended status (`rpi_not_acceptable`...)."),
        F("cip.data_length", "integer", "Bytes of service data after the path (requests) or status (replies)."),
        F("cip.embedded", "boolean", "The service travels inside a Multiple Service Packet or an Unconnected"
          " Send of the same message."),
        F("cip.parent_service", "keyword", "Embedded services: `multiple_service_packet` or"
          " `unconnected_send`."),
        F("cip.index", "integer", "Embedded services of a Multiple Service Packet: position, from 0."),
        F("cip.service_count", "integer", "Multiple Service Packet: number of services it declares."),
        F("cip.services_omitted", "integer", "Multiple Service Packet: services beyond the 64 reported."),
        F("cip.timeout_ticks", "short", "Unconnected Send: timeout ticks."),
        F("cip.elements", "integer", "Tag services: number of elements read or written."),
        F("cip.offset", "long", "Fragmented tag services: byte offset."),
        F("cip.data_type", "keyword", "Tag services: data type (BOOL, SINT, INT, DINT, REAL, STRUCT...)."),
        F("cip.data_type_code", "integer", "Tag services: data type code (0xC4 DINT, 0xCA REAL, 0xA0"
          " structure)."),
        F("cip.structure_handle", "integer", "Tag services on a structure: the structure handle."),
        F("cip.mask_size", "integer", "Read Modify Write Tag: size of the OR and AND masks."),
        F("cip.reset_type", "short", "Reset: type (0 power cycle, 1 factory defaults, 2 factory defaults"
          " but communication)."),
        F("cip.cm.timeout_ticks", "short", "Forward Open/Close: timeout ticks."),
        F("cip.cm.ot_connection_id", "long", "Forward Open: O->T network connection id."),
        F("cip.cm.to_connection_id", "long", "Forward Open: T->O network connection id."),
        F("cip.cm.connection_serial", "integer", "Forward Open/Close: connection serial number."),
        F("cip.cm.originator_vendor_id", "integer", "Forward Open/Close: originator vendor id."),
        F("cip.cm.originator_serial", "long", "Forward Open/Close: originator serial number."),
        F("cip.cm.timeout_multiplier", "short", "Forward Open: connection timeout multiplier code."),
        F("cip.cm.ot_rpi_us", "long", "Forward Open request: O->T requested packet interval (microseconds)."),
        F("cip.cm.to_rpi_us", "long", "Forward Open request: T->O requested packet interval (microseconds)."),
        F("cip.cm.ot_api_us", "long", "Forward Open reply: O->T actual packet interval (microseconds)."),
        F("cip.cm.to_api_us", "long", "Forward Open reply: T->O actual packet interval (microseconds)."),
        F("cip.cm.ot_size", "integer", "Forward Open: O->T connection size (bytes)."),
        F("cip.cm.to_size", "integer", "Forward Open: T->O connection size (bytes)."),
        F("cip.cm.ot_type", "keyword", "Forward Open: O->T connection type (null, multicast,"
          " point_to_point)."),
        F("cip.cm.to_type", "keyword", "Forward Open: T->O connection type (null, multicast,"
          " point_to_point)."),
        F("cip.cm.ot_priority", "keyword", "Forward Open: O->T priority (low, high, scheduled, urgent)."),
        F("cip.cm.to_priority", "keyword", "Forward Open: T->O priority (low, high, scheduled, urgent)."),
        F("cip.cm.transport_class", "short", "Forward Open: transport class (1 cyclic I/O, 3 explicit"
          " messaging)."),
        F("cip.cm.trigger", "keyword", "Forward Open: production trigger (cyclic, change_of_state,"
          " application_object)."),
        F("cip.cm.direction", "keyword", "Forward Open: transport direction bit (client, server)."),
        F("cip.cm.large", "boolean", "Large Forward Open (32-bit connection parameters)."),
        F("cip.cm.connection_path", "keyword", "Forward Open/Close: the connection path as text."),
        F("cip.cm.connection_class", "integer", "Forward Open/Close: class ids of the connection path.",
          array=True),
        F("cip.cm.remaining_path_size", "short", "Failed Forward Open or Unconnected Send: remaining path"
          " size (words)."),
        F("cip.pccc.command", "short", "Execute PCCC: PCCC command (CMD; replies have 0x40 set)."),
        F("cip.pccc.function_code", "short", "Execute PCCC: function code (FNC) of commands 0x06, 0x07,"
          " 0x0F."),
        F("cip.pccc.function", "keyword", "Execute PCCC: command name (`protected_typed_logical_read_3`,"
          " `change_cpu_mode`...), or `unknown-<cmd>[-<fnc>]`."),
        F("cip.pccc.transaction", "integer", "Execute PCCC: transaction number (TNS)."),
        F("cip.pccc.status", "short", "Execute PCCC reply: status (STS), 0 success."),
        F("cip.pccc.extended_status", "short", "Execute PCCC reply: extended status (EXT STS)."),
        F("cip.pccc.vendor_id", "integer", "Execute PCCC: requestor vendor id."),
        F("cip.pccc.serial_number", "long", "Execute PCCC: requestor serial number."),
        F("cip.pccc.byte_size", "short", "Execute PCCC typed logical read/write: byte size."),
        F("cip.pccc.address", "keyword", "Execute PCCC typed logical read/write: data table address"
          " (`N7:0`, `F8:3.1`)."),
    )


_PRIMARY: Callable[[Event], bool] = lambda e: "enip.command" in e and "cip.embedded" not in e  # noqa: E731
_LIST_IDENTITY: Callable[[Event], bool] = lambda e: e.get("enip.command") == 0x0063  # noqa: E731

DISSECTOR = Dissector(
    name="enip",
    description="EtherNet/IP encapsulation commands and the CIP services they carry (SendRRData and"
    " SendUnitData events are named after the CIP service). Class-specific CIP services are named by the"
    " class the path addresses. `list_identity/response` is the reply's operation; `execute_pccc/<function>`"
    " rows override `execute_pccc`'s operation for the PCCC command it carries. Multiple Service Packet and"
    " Unconnected Send take the operation of their embedded requests when those agree.",
    tcp_ports=frozenset({44818}),
    udp_ports=frozenset({44818, 2222}),
    probe=probe,
    port_probe=port_probe,
    new_session=EnipSession,
    routine_actions=frozenset({"nop", "cyclic_io"}),
    fields=_fields(),
    operations=OPERATIONS,
    wireshark=WiresharkFields(
        display_filter="enip.command",
        fields={
            "enip.command": "enip.command",
            "enip.length": "enip.length",
            "enip.session_handle": "enip.session",
            "enip.status": "enip.status",
            "enip.options": "enip.options",
            "enip.cpf.item_types": "enip.cpf.typeid",
            "enip.connection_id": "enip.cpf.cai.connid",
            "cip.sequence_count": "cip.seq",
            "enip.identity.vendor_id": "enip.lir.vendor",
            "enip.identity.device_type": "enip.lir.devtype",
            "enip.identity.product_code": "enip.lir.prodcode",
            "enip.identity.serial_number": "enip.lir.serial",
            "enip.identity.status": "enip.lir.status",
            "enip.identity.state": "enip.lir.state",
            "enip.identity.product_name": "enip.lir.name",
            "cip.service_code": "cip.sc",
            "cip.general_status": "cip.genstat",
            "cip.class": "cip.class",
            "cip.instance": "cip.instance",
            "cip.attribute": "cip.attribute",
            "cip.symbol": "cip.symbol",
            "cip.service_count": "cip.msp.num_services",
            "cip.cm.ot_connection_id": "cip.cm.ot_connid",
            "cip.cm.to_connection_id": "cip.cm.to_connid",
            "cip.cm.connection_serial": "cip.cm.conn_serial_num",
            "cip.cm.originator_vendor_id": "cip.cm.vendor",
            "cip.cm.originator_serial": "cip.cm.orig_serial_num",
            "cip.cm.ot_rpi_us": "cip.cm.otrpi",
            "cip.cm.to_rpi_us": "cip.cm.torpi",
            "cip.pccc.command@request": "cip.pccc.cmd.code",
        },
        decode_as="enip",
        when={
            **{key: _PRIMARY for key in ("enip.command", "enip.length", "enip.session_handle", "enip.status",
                                         "enip.options", "enip.cpf.item_types", "enip.connection_id",
                                         "cip.sequence_count")},
            **{key: _LIST_IDENTITY for key in ("enip.identity.vendor_id", "enip.identity.device_type",
                                               "enip.identity.product_code", "enip.identity.serial_number",
                                               "enip.identity.status", "enip.identity.state",
                                               "enip.identity.product_name")},
        },
    ),
)
