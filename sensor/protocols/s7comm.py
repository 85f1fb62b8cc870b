"""S7comm and S7comm-plus over ISO-on-TCP (TPKT and COTP, TCP port 102): one event per message.

Framing, outermost first (all big-endian):

* **TPKT** (RFC 1006): version 3, a reserved octet, a 16-bit length that counts
  the 4-octet header. Several TPKTs may share a TCP segment and one may span
  segments; the session keeps a buffer per direction.
* **COTP** (ISO 8073 class 0): a length indicator, the TPDU code (high nibble)
  and its fixed part. CR/CC carry references, class and parameters (TPDU size,
  calling and called TSAP); DR a reason, ER a reject cause. A DT TPDU carries
  a last-data-unit bit (EOT): the payloads of DT TPDUs are joined until one with
  EOT set, then the joined bytes are one S7 message (at most
  :data:`MAX_REASSEMBLY` bytes). Connection management TPDUs are events of
  their own (``cotp_*``); DT TPDUs are not, their message is.
* The DT payload starts with a protocol id: 0x32 **S7comm** (header: ROSCTR,
  redundancy id, PDU reference, parameter and data lengths, and for ack and
  ack-data an error class and code; then parameters and data), or 0x72
  **S7comm-plus** (version, data length, an integrity part in V3, the data --
  opcode, function, sequence number, session id -- and a trailer that repeats
  the protocol id and version; a message without trailer continues in the
  next one).

Everything that depends on a function code is data: :data:`_JOB_FUNCTIONS`,
:data:`_USERDATA` (function group and subfunction), :data:`_PI_SERVICES`,
:data:`_PLUS_FUNCTIONS`, and the area, transport size, return code and error
tables, each with an explicit ``unknown-<n>`` default.

The called TSAP of the COTP connection request names the CPU (rack and slot in
the low octet, the connection type -- PG, OP, S7 basic -- in the high one):
every later event of the flow carries it as ``ics.unit`` (``rack/slot``).

Three outcomes per message, nothing else: an event; an event with
``event.type: ["protocol", "error"]`` and the list ``s7comm.anomaly`` (it
parses but breaks the protocol: lengths that disagree, items cut short, a PDU
larger than the negotiated size...); or :class:`~sensor.dissect.ProtocolViolation`
when the flow is not ISO-on-TCP at all, or its first COTP data is neither
S7comm nor S7comm-plus (another protocol on port 102, e.g. IEC 61850 MMS).

Jobs are paired with their ack or ack-data by direction and PDU reference,
userdata requests with their responses likewise, S7comm-plus requests with
their responses by sequence number -- at most :data:`MAX_OUTSTANDING` per flow
for :data:`PAIR_TIMEOUT` seconds. A response inherits its request's function,
items (whose transport sizes decode the values read) and tags, plus the
response time. Jobs still unanswered when the flow ends are reported then
(``unanswered_request``).
"""

from __future__ import annotations

import math
import struct
from typing import Any

from sensor.dissect import Dissector, Event, ProtocolViolation, WiresharkFields
from sensor.framing import FramedSession
from sensor.schema import Field

__all__ = ["DISSECTOR", "S7commSession", "probe", "MAX_ITEMS", "MAX_VALUES", "MAX_OUTSTANDING", "PAIR_TIMEOUT",
           "MAX_REASSEMBLY", "MAX_JUNK", "MAX_RECORDS", "MAX_REPORTED_UNANSWERED", "OPERATIONS"]

MAX_ITEMS = 64
"""Read/write items recorded per event (``s7comm.item.*``, ``ics.tag``); the rest are counted."""
MAX_VALUES = 256
"""Numeric values recorded per event in ``ics.values``."""
MAX_OUTSTANDING = 256
"""Requests awaiting their response per flow; beyond it the oldest is forgotten (counted)."""
PAIR_TIMEOUT = 60.0
"""Seconds after which an unanswered request no longer pairs with its response."""
MAX_REASSEMBLY = 64 << 10
"""Bytes of one message assembled from COTP DT fragments, userdata fragments or S7comm-plus fragments."""
MAX_JUNK = 1024
"""Bytes that are no TPKT header tolerated in a row between TPKTs before the flow is given up."""
MAX_RECORDS = 64
"""SZL records and listed blocks recorded per event."""
MAX_REPORTED_UNANSWERED = 16
"""Unanswered jobs reported as events when the flow ends; the rest are counted."""
MAX_CACHE = 256
"""Parsed read/write parameter blocks remembered per flow (polling repeats the same bytes)."""

# -- wire layouts -----------------------------------------------------------------------------------

_H = struct.Struct(">H")
_I = struct.Struct(">I")
_HH = struct.Struct(">HH")
_HHHH = struct.Struct(">HHHH")
_S7_HEAD = struct.Struct(">BBHHHH")  # protocol id, ROSCTR, redundancy id, PDU reference, param length, data length
_ITEM = struct.Struct(">BBBBHHBBH")  # 0x12, spec length, syntax id, transport size, length, DB, area, address
_DATA_ITEM = struct.Struct(">BBH")  # return code, transport size, length
_SETUP = struct.Struct(">BBHHH")  # function, reserved, max AmQ calling, max AmQ called, PDU size
_PLUS_HEAD = struct.Struct(">HHHH")  # reserved, function, reserved, sequence number

_ERROR_TYPE = ("protocol", "error")
_PROTOCOL_S7 = 0x32
_PROTOCOL_PLUS = 0x72

# -- COTP -------------------------------------------------------------------------------------------

_COTP_TPDUS: dict[int, tuple[str, str, str]] = {  # code (high nibble) -> short name, action, role
    0x1: ("ED", "cotp_expedited_data", "unsolicited"),
    0x2: ("EA", "cotp_expedited_ack", "response"),
    0x5: ("RJ", "cotp_reject", "response"),
    0x6: ("AK", "cotp_data_ack", "response"),
    0x7: ("ER", "cotp_error", "response"),
    0x8: ("DR", "cotp_disconnect_request", "request"),
    0xC: ("DC", "cotp_disconnect_confirm", "response"),
    0xD: ("CC", "cotp_connection_confirm", "response"),
    0xE: ("CR", "cotp_connection_request", "request"),
    0xF: ("DT", "cotp_data", "request"),
}
_COTP_OPERATIONS = {
    "cotp_connection_request": "session", "cotp_connection_confirm": "session",
    "cotp_disconnect_request": "session", "cotp_disconnect_confirm": "session",
    "cotp_error": "other", "cotp_expedited_data": "other", "cotp_expedited_ack": "other",
    "cotp_reject": "other", "cotp_data_ack": "other",
}
_DISCONNECT_REASONS = {
    0: "not_specified", 1: "congestion", 2: "session_not_attached", 3: "address_unknown",
    128: "normal", 129: "remote_congestion", 130: "connection_negotiation_failed", 131: "duplicate_reference",
    132: "mismatched_references", 133: "protocol_error", 135: "reference_overflow", 136: "connection_refused",
    138: "header_or_parameter_length_invalid",
}
_REJECT_CAUSES = {0: "not_specified", 1: "invalid_parameter_code", 2: "invalid_tpdu_type",
                  3: "invalid_parameter_value"}
_CONNECTION_TYPES = {1: "pg", 2: "op", 3: "s7_basic"}

# -- S7comm header ------------------------------------------------------------------------------------

JOB, ACK, ACK_DATA, USERDATA = 1, 2, 3, 7
_ROSCTR_NAMES = {JOB: "job", ACK: "ack", ACK_DATA: "ack_data", USERDATA: "userdata"}
_ERROR_CLASSES = {
    0x00: "ok", 0x81: "application_relationship_error", 0x82: "object_definition_error",
    0x83: "no_resources", 0x84: "service_processing_error", 0x85: "supplies_error", 0x87: "access_error",
}
# A few error codes (class << 8 | code, or the userdata parameter error code) worth a readable name.
_ERROR_TEXTS = {
    0x0110: "invalid block number", 0x0111: "invalid request length", 0x0112: "invalid parameter",
    0x0113: "invalid block type", 0x0114: "block not found", 0x0115: "block already exists",
    0x0116: "block is write-protected", 0x0119: "incorrect password", 0x011C: "protocol error",
    0x8001: "service not possible in the block's current status", 0x8100: "service unknown to the module",
    0x8104: "service not implemented or frame error", 0x8301: "insufficient memory",
    0x8304: "no further parallel upload possible", 0x8305: "function not available",
    0x8401: "invalid service sequence", 0x8404: "function cannot be performed", 0x8500: "wrong PDU size",
    0x8701: "address error", 0x8702: "service not supported", 0x8703: "access to object refused",
    0x8704: "object damaged", 0xD081: "function not permitted in current mode",
    0xD0A1: "function not permitted in current protection level", 0xD209: "block not found",
    0xD20C: "priority class of the OB does not exist", 0xD401: "invalid SZL id", 0xD402: "invalid SZL index",
    0xD602: "incorrect password", 0xD603: "password already set or not legitimated",
}

# -- job functions --------------------------------------------------------------------------------------

READ_VAR, WRITE_VAR, SETUP = 0x04, 0x05, 0xF0
REQUEST_DOWNLOAD, DOWNLOAD_BLOCK, DOWNLOAD_ENDED = 0x1A, 0x1B, 0x1C
START_UPLOAD, UPLOAD, END_UPLOAD = 0x1D, 0x1E, 0x1F
PI_SERVICE, PLC_STOP = 0x28, 0x29

_JOB_FUNCTIONS: dict[int, tuple[str, str, str]] = {  # code -> name, ics.operation, meaning
    0x00: ("cpu_services", "other", "CPU services"),
    SETUP: ("setup_communication", "session", "setup communication: parallel jobs and PDU size"),
    READ_VAR: ("read_var", "read", "read variables (items by area, DB, address)"),
    WRITE_VAR: ("write_var", "write", "write variables"),
    REQUEST_DOWNLOAD: ("request_download", "program_download", "request download of a block to the PLC"),
    DOWNLOAD_BLOCK: ("download_block", "program_download", "the PLC asks for the block's bytes (job from"
                     " the PLC, ack-data from the programming device)"),
    DOWNLOAD_ENDED: ("download_ended", "program_download", "download of a block ended"),
    START_UPLOAD: ("start_upload", "program_upload", "start upload of a block from the PLC"),
    UPLOAD: ("upload", "program_upload", "upload the block's bytes"),
    END_UPLOAD: ("end_upload", "program_upload", "upload ended"),
    PI_SERVICE: ("plc_control", "other", "PLC control: start a program invocation service (by name)"),
    PLC_STOP: ("plc_stop", "control_stop", "PLC stop"),
}
_BLOCK_CONTROL = frozenset({REQUEST_DOWNLOAD, DOWNLOAD_BLOCK, DOWNLOAD_ENDED, START_UPLOAD, UPLOAD, END_UPLOAD})

# PI service name -> ics.operation, meaning (PLC control, function 0x28)
_PI_SERVICES: dict[str, tuple[str, str]] = {
    "_INSE": ("program_download", "activate (insert) downloaded blocks"),
    "_INS2": ("program_download", "activate (insert) downloaded blocks"),
    "_DELE": ("program_delete", "delete blocks"),
    "P_PROGRAM": ("control_run", "start the PLC (hot start; cold start with argument `C`)"),
    "_MODU": ("config_change", "copy RAM to ROM"),
    "_GARB": ("config_change", "compress PLC memory"),
    "_N_LOGIN_": ("auth", "NC login"),
    "_N_LOGOUT": ("auth", "NC logout"),
    "_N_F_DELE": ("file_delete", "NC delete file"),
    "_N_F_COPY": ("file_write", "NC copy file"),
    "_N_F_OPEN": ("file_read", "NC open file"),
    "_N_F_OPER": ("file_read", "NC open file read-only"),
    "_N_F_CLOS": ("file_read", "NC close file"),
}
_BLOCK_SERVICES = frozenset({"_INSE", "_INS2", "_DELE"})

# -- read/write items -----------------------------------------------------------------------------------

_SYNTAX_IDS = {
    0x10: "s7any", 0x11: "parameter_short", 0x12: "parameter_extended", 0x13: "pbc_r_id",
    0x15: "alarm_lockfree", 0x16: "alarm_ind", 0x19: "alarm_ack", 0x1A: "alarm_queryreq", 0x1C: "notify_ind",
    0x82: "nck", 0x83: "nck_metric", 0x84: "nck_inch", 0xA2: "drive_es_any", 0xB0: "dbread", 0xB2: "1200sym",
}
S7ANY = 0x10
AREA_P, AREA_I, AREA_Q, AREA_M, AREA_DB, AREA_DI, AREA_L, AREA_V = 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87
AREA_C, AREA_T, AREA_C200, AREA_T200 = 0x1C, 0x1D, 0x1E, 0x1F
_AREAS: dict[int, tuple[str, str]] = {  # code -> name, tag prefix
    0x01: ("data_record", "REC"), 0x03: ("system_info_200", "SI"), 0x05: ("system_flags_200", "SF"),
    0x06: ("analog_inputs_200", "AI"), 0x07: ("analog_outputs_200", "AQ"),
    AREA_P: ("peripheral", "P"), AREA_I: ("inputs", "I"), AREA_Q: ("outputs", "Q"), AREA_M: ("flags", "M"),
    AREA_DB: ("data_block", "DB"), AREA_DI: ("instance_data_block", "DI"), AREA_L: ("local_data", "L"),
    AREA_V: ("previous_local_data", "V"), AREA_C: ("counters", "C"), AREA_T: ("timers", "T"),
    AREA_C200: ("iec_counters_200", "IEC_C"), AREA_T200: ("iec_timers_200", "IEC_T"),
}
_NUMBERED_AREAS = frozenset({AREA_C, AREA_T, AREA_C200, AREA_T200})
# Item transport size -> name, element octets, struct code of one element, tag size letter
_TRANSPORT_SIZES: dict[int, tuple[str, int, str, str]] = {
    1: ("bit", 1, "B", "X"), 2: ("byte", 1, "B", "B"), 3: ("char", 1, "B", "B"), 4: ("word", 2, "H", "W"),
    5: ("int", 2, "h", "W"), 6: ("dword", 4, "I", "D"), 7: ("dint", 4, "i", "D"), 8: ("real", 4, "f", "D"),
    9: ("date", 2, "H", "W"), 10: ("tod", 4, "I", "D"), 11: ("time", 4, "i", "D"), 12: ("s5time", 2, "H", "W"),
    15: ("date_and_time", 8, "", "B"), 28: ("counter", 2, "H", "W"), 29: ("timer", 2, "H", "W"),
    30: ("iec_counter", 4, "I", "D"), 31: ("iec_timer", 4, "I", "D"), 32: ("hs_counter", 4, "I", "D"),
}
# Data transport size (in read responses, write requests, userdata) -> name; 3, 4, 5 count bits.
_DATA_SIZES = {0x00: "null", 0x03: "bit", 0x04: "byte_word_dword", 0x05: "integer", 0x06: "dinteger",
               0x07: "real", 0x09: "octet_string", 0x11: "nck_address1", 0x12: "nck_address2"}
_BIT_LENGTHS = frozenset({0x03, 0x04, 0x05})
_RETURN_CODES = {0x00: "reserved", 0x01: "hardware_error", 0x03: "access_denied", 0x05: "invalid_address",
                 0x06: "data_type_not_supported", 0x07: "data_type_inconsistent", 0x0A: "object_does_not_exist",
                 0xFF: "ok"}
_OK = 0xFF

# -- userdata -------------------------------------------------------------------------------------------

_UD_TYPES = {0x0: "push", 0x4: "request", 0x8: "response"}
_UD_ROLES = {0x0: "unsolicited", 0x4: "request", 0x8: "response"}
_MODES = {0: "stop", 1: "warm_restart", 2: "run", 3: "hot_restart", 4: "hold", 6: "cold_restart", 9: "run_r",
          11: "link_up", 12: "update"}
GROUP_MODE, GROUP_PROGRAMMER, GROUP_CYCLIC, GROUP_BLOCK, GROUP_CPU, GROUP_SECURITY, GROUP_PBC, GROUP_TIME = range(8)
GROUP_NC = 0xF
_GROUPS = {GROUP_MODE: "mode_transition", GROUP_PROGRAMMER: "programmer_commands", GROUP_CYCLIC: "cyclic_services",
           GROUP_BLOCK: "block_functions", GROUP_CPU: "cpu_functions", GROUP_SECURITY: "security",
           GROUP_PBC: "pbc_bsend", GROUP_TIME: "time_functions", GROUP_NC: "nc_programming"}
# (group, subfunction) -> name, ics.operation, meaning
_USERDATA: dict[tuple[int, int], tuple[str, str, str]] = {
    (GROUP_PROGRAMMER, 0x01): ("block_status", "diagnostic", "monitor block status"),
    (GROUP_PROGRAMMER, 0x02): ("variable_status", "read", "monitor variables (variable table)"),
    (GROUP_PROGRAMMER, 0x03): ("output_istack", "diagnostic", "output interrupt stack"),
    (GROUP_PROGRAMMER, 0x04): ("output_bstack", "diagnostic", "output block stack"),
    (GROUP_PROGRAMMER, 0x05): ("output_lstack", "diagnostic", "output local data stack"),
    (GROUP_PROGRAMMER, 0x06): ("time_measurement", "diagnostic", "run-time measurement"),
    (GROUP_PROGRAMMER, 0x07): ("force_selection", "read", "read the force selection"),
    (GROUP_PROGRAMMER, 0x08): ("modify_variable", "write", "modify variables"),
    (GROUP_PROGRAMMER, 0x09): ("force", "write", "force inputs/outputs"),
    (GROUP_PROGRAMMER, 0x0A): ("breakpoint", "mode_change", "set a breakpoint (the CPU goes to HOLD)"),
    (GROUP_PROGRAMMER, 0x0B): ("exit_hold", "mode_change", "leave HOLD"),
    (GROUP_PROGRAMMER, 0x0C): ("memory_reset", "restart", "memory reset"),
    (GROUP_PROGRAMMER, 0x0D): ("disable_job", "diagnostic", "disable a test job"),
    (GROUP_PROGRAMMER, 0x0E): ("enable_job", "diagnostic", "enable a test job"),
    (GROUP_PROGRAMMER, 0x0F): ("delete_job", "diagnostic", "delete a test job"),
    (GROUP_PROGRAMMER, 0x10): ("read_job_list", "diagnostic", "read the test job list"),
    (GROUP_PROGRAMMER, 0x11): ("read_job", "diagnostic", "read a test job"),
    (GROUP_PROGRAMMER, 0x12): ("replace_job", "diagnostic", "replace a test job"),
    (GROUP_PROGRAMMER, 0x13): ("block_status_v2", "diagnostic", "monitor block status (v2)"),
    (GROUP_PROGRAMMER, 0x16): ("flash_led", "diagnostic", "flash the module LED"),
    (GROUP_CYCLIC, 0x01): ("cyclic_transfer", "read", "subscribe to / push cyclic variable data"),
    (GROUP_CYCLIC, 0x04): ("unsubscribe", "read", "end a cyclic subscription"),
    (GROUP_CYCLIC, 0x05): ("change_driven_transfer", "read", "subscribe to / push changed variables"),
    (GROUP_CYCLIC, 0x07): ("change_driven_transfer_modify", "read", "modify a change-driven subscription"),
    (GROUP_CYCLIC, 0x08): ("rdrec", "read", "read a data record"),
    (GROUP_BLOCK, 0x01): ("list_blocks", "diagnostic", "count the blocks of each type"),
    (GROUP_BLOCK, 0x02): ("list_blocks_of_type", "diagnostic", "list the blocks of one type"),
    (GROUP_BLOCK, 0x03): ("get_block_info", "diagnostic", "read a block's header information"),
    (GROUP_CPU, 0x01): ("read_szl", "diagnostic", "read a system status list (SZL); identification lists"
                        " 0x_11 and 0x_1C are `read_szl/identity`"),
    (GROUP_CPU, 0x02): ("message_service", "alarm", "subscribe to messages and alarms"),
    (GROUP_CPU, 0x03): ("diagnostic_message", "alarm", "diagnostic buffer entry pushed by the CPU"),
    (GROUP_CPU, 0x05): ("alarm8_indication", "alarm", "ALARM_8 indication"),
    (GROUP_CPU, 0x06): ("notify_indication", "alarm", "NOTIFY indication"),
    (GROUP_CPU, 0x07): ("alarm8_lock", "alarm", "lock an ALARM_8 message"),
    (GROUP_CPU, 0x08): ("alarm8_unlock", "alarm", "unlock an ALARM_8 message"),
    (GROUP_CPU, 0x09): ("scan_indication", "alarm", "SCAN indication"),
    (GROUP_CPU, 0x0B): ("alarm_ack", "alarm", "acknowledge an alarm"),
    (GROUP_CPU, 0x0C): ("alarm_ack_indication", "alarm", "alarm acknowledgement indication"),
    (GROUP_CPU, 0x0D): ("alarm_lock_indication", "alarm", "alarm lock indication"),
    (GROUP_CPU, 0x0E): ("alarm_unlock_indication", "alarm", "alarm unlock indication"),
    (GROUP_CPU, 0x10): ("ar_send_indication", "report", "AR_SEND indication"),
    (GROUP_CPU, 0x11): ("alarm_sq_indication", "alarm", "ALARM_SQ indication"),
    (GROUP_CPU, 0x12): ("alarm_s_indication", "alarm", "ALARM_S indication"),
    (GROUP_CPU, 0x13): ("alarm_query", "alarm", "query alarms"),
    (GROUP_CPU, 0x16): ("notify8_indication", "alarm", "NOTIFY_8 indication"),
    (GROUP_SECURITY, 0x01): ("plc_password", "auth", "send the PLC password (never recorded)"),
    (GROUP_SECURITY, 0x02): ("clear_password", "auth", "revoke the password legitimation"),
    (GROUP_PBC, 0x01): ("bsend", "other", "BSEND/BRECV block communication"),
    (GROUP_TIME, 0x01): ("read_clock", "diagnostic", "read the CPU clock"),
    (GROUP_TIME, 0x02): ("set_clock", "time_sync", "set the CPU clock"),
    (GROUP_TIME, 0x03): ("read_clock_following", "diagnostic", "read the CPU clock (following)"),
    (GROUP_TIME, 0x04): ("set_clock_2", "time_sync", "set the CPU clock (2)"),
    (GROUP_NC, 0x01): ("nc_request_download", "file_write", "NC program: request download"),
    (GROUP_NC, 0x02): ("nc_download_block", "file_write", "NC program: download block"),
    (GROUP_NC, 0x03): ("nc_continue_download", "file_write", "NC program: continue download"),
    (GROUP_NC, 0x04): ("nc_download_ended", "file_write", "NC program: download ended"),
    (GROUP_NC, 0x06): ("nc_start_upload", "file_read", "NC program: start upload"),
    (GROUP_NC, 0x07): ("nc_upload", "file_read", "NC program: upload"),
    (GROUP_NC, 0x08): ("nc_continue_upload", "file_read", "NC program: continue upload"),
}
READ_SZL = (GROUP_CPU, 0x01)
_IDENTITY_LISTS = frozenset({0x11, 0x1C})  # SZL partial list numbers that identify the module

_SZL_LISTS = {
    0x00: "list of all SZL ids", 0x11: "module identification", 0x12: "CPU characteristics",
    0x13: "user memory areas", 0x14: "system areas", 0x15: "block types", 0x16: "priority classes",
    0x17: "permitted SDBs", 0x18: "maximum S7-300 I/O configuration", 0x19: "status of the module LEDs",
    0x1C: "component identification", 0x21: "interrupt/error assignment", 0x22: "interrupt status",
    0x23: "priority classes", 0x24: "modes", 0x25: "process image partitions and OBs",
    0x31: "communication capability parameters", 0x32: "communication status data",
    0x33: "diagnostics: device logon list", 0x37: "Ethernet details of a module", 0x71: "H CPU group information",
    0x74: "status of the module LEDs", 0x75: "switched DP slaves in the H system", 0x81: "start information list",
    0x82: "start event list", 0x90: "DP master system information", 0x91: "module status information",
    0x92: "rack/station status information", 0x94: "rack/station status information",
    0x95: "extended DP master system information", 0x96: "module status information (PROFINET/PROFIBUS)",
    0xA0: "diagnostic buffer of the CPU", 0xB1: "module diagnostic information (record 0)",
    0xB2: "module diagnostic information (record 1, geographical address)",
    0xB3: "module diagnostic information (record 1, logical address)", 0xB4: "diagnostic data of a DP slave",
}
# SZL 0x001C record index -> identity field
_COMPONENT_FIELDS = {1: "automation_system_name", 2: "module_name", 3: "plant_id", 4: "copyright",
                     5: "serial_number", 7: "module_type_name", 8: "memory_card_serial", 11: "location"}
_CPU_MODES = {0: "unknown", 1: "stop_update", 2: "stop_memory_reset", 3: "stop_self_initialization",
              4: "stop", 5: "startup_cold_restart", 6: "startup_warm_restart", 7: "startup_hot_restart",
              8: "run", 9: "run_redundant", 10: "hold", 13: "defect"}
_EVENT_CLASSES = {1: "standard_ob_event", 2: "synchronous_error", 3: "asynchronous_error", 4: "mode_transition",
                  5: "runtime_event", 6: "communication_event", 7: "h_f_system_event", 8: "module_diagnostic",
                  9: "standard_user_event", 10: "user_event", 11: "user_event", 12: "reserved", 13: "reserved",
                  14: "h_f_system_event", 15: "module_event"}

# -- blocks -------------------------------------------------------------------------------------------

_BLOCK_TYPES = {"08": "OB", "09": "CMod", "0A": "DB", "0B": "SDB", "0C": "FC", "0D": "SFC", "0E": "FB", "0F": "SFB"}
_FILESYSTEMS = {"P": "passive", "A": "active", "B": "active_and_passive"}

# -- S7comm-plus ------------------------------------------------------------------------------------------

_PLUS_VERSIONS = {1: "V1", 2: "V2", 3: "V3", 0xFE: "extended_keep_alive", 0xFF: "keep_alive"}
_PLUS_OPCODES = {0x31: "request", 0x32: "response", 0x33: "notification", 0x02: "response2"}
_PLUS_ROLES = {0x31: "request", 0x32: "response", 0x33: "unsolicited", 0x02: "response"}
_PLUS_FUNCTIONS: dict[int, tuple[str, str]] = {  # function code -> name, ics.operation
    0x04B1: ("error", "other"), 0x04BB: ("explore", "read"), 0x04CA: ("create_object", "session"),
    0x04D4: ("delete_object", "session"), 0x04F2: ("set_variable", "write"), 0x04FC: ("get_variable", "read"),
    0x0506: ("add_link", "other"), 0x051A: ("remove_link", "other"), 0x0524: ("get_link", "other"),
    0x0542: ("set_multi_variables", "write"), 0x054C: ("get_multi_variables", "read"),
    0x0556: ("begin_sequence", "other"), 0x0560: ("end_sequence", "other"), 0x056B: ("invoke", "other"),
    0x057C: ("set_var_substreamed", "write"), 0x0586: ("get_var_substreamed", "read"),
    0x0590: ("get_variables_address", "read"), 0x059A: ("abort", "session"),
}
# Requests whose first four octets after the transport flags are an object id.
_PLUS_OBJECT_FIRST = frozenset({0x04BB, 0x04D4, 0x04F2, 0x04FC, 0x0542, 0x054C, 0x056B, 0x0586, 0x057C})
_PLUS_ITEM_COUNT = frozenset({0x04F2, 0x04FC, 0x0542, 0x054C})
_PLUS_ERRORS = {0: "ok", 17: "message_session_pre_legitimated", 19: "partial_error", 22: "session_delegitimated",
                -12: "object_not_found", -17: "invalid_crc", -134: "multi_es_not_supported", -255: "invalid_lid"}


def _coded(table: dict[int, str], code: int) -> str:
    name = table.get(code)
    return name if name is not None else f"unknown-{code}"


# -- tags -----------------------------------------------------------------------------------------------


def _tag(area: int, db: int, tsize: int, byte: int, bit: int, number: int) -> str:
    """Step 7 notation of an item's first element: ``DB1.DBW10``, ``M10.3``, ``IB0``, ``T5``."""
    spec = _AREAS.get(area)
    prefix = spec[1] if spec else f"AREA{area}:"
    if area in _NUMBERED_AREAS:
        return f"{prefix}{number}"
    size = _TRANSPORT_SIZES.get(tsize)
    letter = size[3] if size else "B"
    if area == AREA_DB or area == AREA_DI:
        head = f"{prefix}{db}.{prefix}{letter}{byte}"
        return f"{head}.{bit}" if letter == "X" else head
    if letter == "X":
        return f"{prefix}{byte}.{bit}"
    return f"{prefix}{letter}{byte}"


class _Items:
    """The parsed item list of one read/write parameter block (cached per flow: polling repeats it)."""

    __slots__ = ("count", "decoders", "fields", "anomaly", "single", "plan")

    def __init__(self, count: int, decoders: tuple[tuple[int, struct.Struct | None, bool] | None, ...],
                 fields: dict[str, Any], anomaly: str | None, single: tuple[int, int] | None) -> None:
        self.count = count  # declared item count
        # Per recorded item: (data octets expected, Struct of all its elements or None for bits, floats?),
        # or None when the item's values cannot be decoded (not S7ANY, unknown or composite size).
        self.decoders = decoders
        self.fields = fields  # event fields: s7comm.item.*, ics.tag (tuples)
        self.anomaly = anomaly
        self.single = single  # (address start, count) of a request with exactly one S7ANY item
        self.plan: _Plan | None = None  # layout of the last all-successful response, to decode the next fast


class _Plan:
    """The data part of a successful read response to one request: polling answers repeat its layout, so
    one Struct checks every item header and another takes every value."""

    __slots__ = ("length", "headers", "expected", "values", "codes", "sizes", "lengths", "floats", "bits")

    def __init__(self, length: int, headers: struct.Struct, expected: tuple[int, ...], values: struct.Struct,
                 codes: tuple[int, ...], sizes: tuple[int, ...], lengths: tuple[int, ...], floats: bool,
                 bits: tuple[int, ...]) -> None:
        self.length = length
        self.headers = headers
        self.expected = expected
        self.values = values
        self.codes = codes
        self.sizes = sizes
        self.lengths = lengths
        self.floats = floats
        self.bits = bits


def _make_plan(items: _Items, codes: tuple[int, ...], sizes: tuple[int, ...], lengths: tuple[int, ...],
               pdu: bytes, o: int, e: int) -> _Plan | None:
    """A plan for responses laid out like this one at ``pdu[o:e]`` (every item successful, each with the
    octets its request asks for)."""
    if items.count != len(codes) or items.count > MAX_ITEMS or any(c != _OK for c in codes):
        return None
    head_fmt = [">"]
    value_fmt = [">"]
    bits: list[int] = []
    floats = False
    nvalues = 0
    last = len(codes) - 1
    for k, dec in enumerate(items.decoders):
        if dec is None or dec[0] != lengths[k]:
            return None
        nbytes = lengths[k]
        fill = "x" if nbytes & 1 and k < last else ""
        head_fmt.append(f"BBH{nbytes}x{fill}")
        st = dec[1]
        if st is None:
            bits.extend(range(nvalues, nvalues + nbytes))
            value_fmt.append(f"4x{nbytes}B{fill}")
            nvalues += nbytes
        else:
            count = int(st.format[1:-1])
            if st.size != nbytes:
                return None
            value_fmt.append(f"4x{count}{st.format[-1]}{fill}")
            floats = floats or dec[2]
            nvalues += count
    if nvalues > MAX_VALUES:
        return None
    headers = struct.Struct("".join(head_fmt))
    if headers.size != e - o:
        return None
    return _Plan(e - o, headers, headers.unpack_from(pdu, o), struct.Struct("".join(value_fmt)), codes, sizes,
                 lengths, floats, tuple(bits))


def _decoder(tsize: int, length: int) -> tuple[int, struct.Struct | None, bool] | None:
    """How to decode the data of an item of ``length`` elements of transport size ``tsize``."""
    spec = _TRANSPORT_SIZES.get(tsize)
    if spec is None or not spec[2] or length == 0:
        return None
    size = spec[1] * length
    if tsize == 1:
        return size, None, False
    count = min(length, MAX_VALUES)
    return size, struct.Struct(f">{count}{spec[2]}"), spec[2] == "f"


def _parse_items(buf: bytes, p0: int, p1: int) -> _Items:
    """Item specifications of a read/write-var request at ``buf[p0:p1]`` (``p0`` is the function octet)."""
    count = buf[p0 + 1] if p1 - p0 >= 2 else 0
    o = p0 + 2
    syntax: list[int] = []
    tsizes: list[int] = []
    lengths: list[int] = []
    dbs: list[int] = []
    areas: list[int] = []
    bytes_: list[int] = []
    bits: list[int] = []
    numbers: list[int] = []
    tags: list[str] = []
    decoders: list[tuple[int, struct.Struct | None, bool] | None] = []
    anomaly = None
    k = 0
    while k < count:
        if o + 2 > p1:
            anomaly = "item-truncated"
            break
        spec_len = buf[o + 1]
        end = o + 2 + spec_len
        if buf[o] != 0x12 or end > p1 or spec_len < 1:
            anomaly = "item-spec-invalid" if end <= p1 else "item-truncated"
            break
        sid = buf[o + 2]
        if k < MAX_ITEMS:
            syntax.append(sid)
            if sid == S7ANY and spec_len == 10:
                _, _, _, tsize, length, db, area, hi, lo = _ITEM.unpack_from(buf, o)
                address = hi << 16 | lo
                tsizes.append(tsize)
                lengths.append(length)
                dbs.append(db)
                areas.append(area)
                if area in _NUMBERED_AREAS:
                    numbers.append(address)
                    byte, bit = address, 0
                else:
                    byte, bit = address >> 3, address & 7
                    bytes_.append(byte)
                    bits.append(bit)
                tags.append(_tag(area, db, tsize, byte, bit, address))
                decoders.append(_decoder(tsize, length))
                if anomaly is None and (area not in _AREAS or tsize not in _TRANSPORT_SIZES):
                    anomaly = "unknown-area" if area not in _AREAS else "unknown-transport-size"
            else:
                decoders.append(None)
                if sid == S7ANY and anomaly is None:
                    anomaly = "item-spec-invalid"
        o = end
        k += 1
    if anomaly is None and o != p1:
        anomaly = "item-count-mismatch"
    fields: dict[str, Any] = {"s7comm.item_count": count, "s7comm.item.syntax_id": tuple(syntax)}
    if tsizes:
        fields["s7comm.item.transport_size"] = tuple(tsizes)
        fields["s7comm.item.length"] = tuple(lengths)
        fields["s7comm.item.db"] = tuple(dbs)
        fields["s7comm.item.area"] = tuple(areas)
        fields["s7comm.item.area_name"] = tuple(_AREAS[a][0] if a in _AREAS else f"unknown-{a}" for a in areas)
        fields["ics.tag"] = tuple(tags)
    if bytes_:
        fields["s7comm.item.byte"] = tuple(bytes_)
        fields["s7comm.item.bit"] = tuple(bits)
    if numbers:
        fields["s7comm.item.number"] = tuple(numbers)
    if count > MAX_ITEMS:
        fields["s7comm.items_omitted"] = count - MAX_ITEMS
    single = None
    if count == 1 and tsizes:
        single = (numbers[0] if numbers else bytes_[0], lengths[0])
    return _Items(count, tuple(decoders), fields, anomaly, single)


def _values(buf: bytes, o: int, nbytes: int, dec: tuple[int, struct.Struct | None, bool] | None, dsize: int,
            out: list[float]) -> None:
    """Append the numeric values of one data item: by the request's transport size when the octets
    present are what it asks for, else by the data transport size."""
    room = MAX_VALUES - len(out)
    if room <= 0 or nbytes <= 0:
        return
    if dec is not None and dec[0] == nbytes:
        st = dec[1]
        if st is None:
            out.extend(b & 1 for b in buf[o:o + min(nbytes, room)])
        elif st.size <= nbytes:
            values = st.unpack_from(buf, o)
            if dec[2]:
                values = [v for v in values if math.isfinite(v)]
            out.extend(values[:room])
        return
    if dsize == 0x03:
        out.extend(b & 1 for b in buf[o:o + min(nbytes, room)])
        return
    if dsize == 0x04:
        size, code = _UNSIGNED_BY_LENGTH.get(nbytes, (1, "B"))
    elif dsize == 0x05:
        size, code = (4, "i") if nbytes == 4 else (2, "h")
    elif dsize == 0x06:
        size, code = 4, "i"
    elif dsize == 0x07:
        size, code = 4, "f"
    else:
        return
    n = min(nbytes // size, room)
    if n <= 0:
        return
    values = struct.unpack_from(f">{n}{code}", buf, o)
    if code == "f":
        out.extend(v for v in values if math.isfinite(v))
    else:
        out.extend(values)


_UNSIGNED_BY_LENGTH = {2: (2, "H"), 4: (4, "I")}


def _bcd(b: int) -> int:
    hi, lo = b >> 4, b & 0x0F
    return -1 if hi > 9 or lo > 9 else hi * 10 + lo


def _s7_time(buf: bytes, o: int) -> str | None:
    """An 8-octet BCD S7 time stamp (year, month, day, hour, minute, second, milliseconds and weekday)
    at ``o`` as ISO 8601; None when a digit or a component is out of range."""
    year, month, day, hour, minute, second = (_bcd(buf[o + k]) for k in range(6))
    ms_hi, ms_lo = _bcd(buf[o + 6]), buf[o + 7] >> 4
    if min(year, month, day, hour, minute, second, ms_hi) < 0 or ms_lo > 9:
        return None
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 60):
        return None
    year += 2000 if year < 90 else 1900
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.{ms_hi * 10 + ms_lo:03d}"


def _text(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("latin-1").strip()


def _version(ausbg: int, ausbe: int) -> str | None:
    """Ausbg/Ausbe of an SZL 0x0011 record as a version: ``V3.2.7`` when Ausbg starts with a letter."""
    letter = ausbg >> 8
    if 0x41 <= letter <= 0x5A:
        return f"{chr(letter)}{ausbg & 0xFF}.{ausbe >> 8}.{ausbe & 0xFF}"
    return None


def _digits(text: str) -> bool:
    """ASCII decimal digits only (``str.isdigit`` also accepts superscripts and other scripts)."""
    return text.isascii() and text.isdigit()


def _block(name: str) -> tuple[str, str, int, str] | None:
    """``0A00001P`` (type, number, filesystem) -> (type code, type name, number, filesystem letter)."""
    if len(name) != 8 or not _digits(name[2:7]):
        return None
    code = name[0:2].upper()
    return code, _BLOCK_TYPES.get(code, f"unknown-{code}"), int(name[2:7]), name[7]


def _varuint(buf: bytes, o: int, end: int, limit: int = 5) -> tuple[int, int]:
    """S7comm-plus variable-length unsigned integer (7 bits per octet, high bit: more follow; the last
    of ``limit`` octets counts 8 bits). Returns (value, next offset); offset -1 when cut short."""
    value = 0
    for k in range(limit):
        if o >= end:
            return 0, -1
        b = buf[o]
        o += 1
        if k == limit - 1:
            return value << 8 | b, o
        value = value << 7 | (b & 0x7F)
        if not b & 0x80:
            return value, o
    return value, o


# -- the operation table ----------------------------------------------------------------------------------


def _operations() -> dict[str, str]:
    """Function name -> ics.operation: COTP, S7comm jobs, PLC control by PI service, userdata, S7comm-plus.

    ``plc_control/<service>`` rows give the operation of a PI service; ``read_szl/identity`` the
    operation of reading an identification SZL (0x_11, 0x_1C).
    """
    table: dict[str, str] = dict(_COTP_OPERATIONS)
    table["cotp_unknown-<n>"] = "other"
    for name, operation, _ in _JOB_FUNCTIONS.values():
        table[name] = operation
    for service, (operation, _) in _PI_SERVICES.items():
        table[f"plc_control/{service}"] = operation
    table["ack"] = "other"
    table["unknown-<n>"] = "other"
    table["rosctr_unknown-<n>"] = "other"
    table["mode_transition"] = "mode_change"
    for name, operation, _ in _USERDATA.values():
        table[name] = operation
    table["read_szl/identity"] = "identity"
    table["<group>_unknown-<n>"] = "other"
    table["userdata_unknown-<n>"] = "other"
    for name, operation in _PLUS_FUNCTIONS.values():
        table[name] = operation
    table["notification"] = "report"
    table["keep_alive"] = "session"
    table["extended_keep_alive"] = "session"
    table["plus_unknown-<n>"] = "other"
    table["unanswered_request"] = "other"
    table["invalid_pdu"] = "other"
    return table


OPERATIONS = _operations()

# -- detection ------------------------------------------------------------------------------------------


def _tsaps(buf: bytes, o: int, end: int) -> tuple[bytes | None, bytes | None, int | None]:
    """Calling TSAP, called TSAP and TPDU size from the COTP CR/CC parameters in ``buf[o:end]``."""
    calling = called = None
    size = None
    while o + 2 <= end:
        code, length = buf[o], buf[o + 1]
        value = buf[o + 2:o + 2 + length]
        if o + 2 + length > end:
            break
        if code == 0xC1:
            calling = value
        elif code == 0xC2:
            called = value
        elif code == 0xC0 and length == 1 and 7 <= value[0] <= 13:
            size = 1 << value[0]
        o += 2 + length
    return calling, called, size


def _s7_tsaps(calling: bytes | None, called: bytes | None) -> bool:
    """TSAPs as S7 uses them: two octets each with a connection type in the high octet (PG, OP, S7 basic
    ...), or a TIA Portal name (``SIMATIC-ROOT-...``). IEC 61850 MMS uses 0x0001/0x0002-style TSAPs."""
    if called is not None and called.startswith(b"SIMATIC-"):
        return True
    return (calling is not None and called is not None and len(calling) == 2 and len(called) == 2
            and calling[0] != 0 and called[0] != 0)


def _plausible_s7(buf: bytes, o: int, end: int, eot: bool) -> bool:
    """An S7comm or S7comm-plus message starts at ``buf[o]`` (``end``: end of this TPKT)."""
    n = end - o
    if n < 2:
        return False
    if buf[o] == _PROTOCOL_S7:
        rosctr = buf[o + 1]
        if rosctr not in _ROSCTR_NAMES:
            return False
        if n < 10:
            return not eot  # a header cut by the segment end (its TPKT continues)
        plen, dlen = _HH.unpack_from(buf, o + 6)
        head = 12 if rosctr in (ACK, ACK_DATA) else 10
        return not eot or head + plen + dlen == n
    if buf[o] == _PROTOCOL_PLUS:
        return buf[o + 1] in _PLUS_VERSIONS
    return False


def probe(payload: bytes, to_server: bool) -> bool:
    """A TPKT with a COTP connection request/confirm whose TSAPs look like S7, or a COTP DT TPDU whose
    data is an S7comm or S7comm-plus header.

    Connection requests with other TSAPs (IEC 61850 MMS on the same port) are left alone; their data
    TPDUs, offered next, are not S7 either.
    """
    n = len(payload)
    if n < 7 or payload[0] != 3 or payload[1] != 0:
        return False
    length = (payload[2] << 8) | payload[3]
    li = payload[4]
    if length < 7 or 5 + li > length or li < 2:
        return False
    code = payload[5] >> 4
    end = min(length, n)
    if code in (0xE, 0xD):
        if length > n or li < 6:
            return False
        calling, called, _ = _tsaps(payload, 11, 5 + li)
        return _s7_tsaps(calling, called)
    if code == 0xF and li == 2:
        return _plausible_s7(payload, 7, end, bool(payload[6] & 0x80) and length <= n)
    return False


# -- the per-flow session ---------------------------------------------------------------------------


class S7commSession(FramedSession):
    """Per-flow state: TPKT buffers, COTP/userdata/S7comm-plus reassembly, negotiated PDU size, pairing."""

    __slots__ = ("_confirmed", "_s7", "_junk", "_dt", "_dt_count", "_plus", "_ud", "_pending", "_cache",
                 "_unit", "_unit_fields", "_pdu_size", "max_outstanding", "timeout")

    frame_name = "tpkt"
    max_resync = 64 << 10

    def __init__(self, max_outstanding: int = MAX_OUTSTANDING, timeout: float = PAIR_TIMEOUT) -> None:
        super().__init__({
            "tpkts": 0, "messages": 0, "s7comm": 0, "s7comm_plus": 0, "cotp": 0, "anomalies": 0,
            "cotp_fragments": 0, "userdata_fragments": 0, "plus_fragments": 0, "empty_dt": 0, "junk_bytes": 0,
            "paired": 0, "unpaired_responses": 0, "requests_dropped": 0, "requests_timed_out": 0,
            "requests_unanswered": 0, "items_truncated": 0, "records_truncated": 0,
        })
        self._confirmed = False  # a whole TPKT with a COTP header was seen
        self._s7 = False  # an S7comm or S7comm-plus message was seen
        self._junk = [0, 0]
        self._dt: list[list[bytes] | None] = [None, None]  # COTP DT payloads awaiting EOT
        self._dt_count = [0, 0]
        self._plus: list[list[Any] | None] = [None, None]  # S7comm-plus fragments: [parts, size, count]
        self._ud: dict[tuple[int, int, int], list[Any]] = {}  # userdata response fragments
        self._pending: dict[int, tuple[Any, ...]] = {}
        self._cache: dict[bytes, _Items] = {}
        self._unit: str | None = None
        self._unit_fields: dict[str, Any] = {}
        self._pdu_size = 0
        self.max_outstanding = max_outstanding
        self.timeout = timeout

    # -- framing ------------------------------------------------------------------------------------

    def _frames(self, data: bytes, d: int, to_server: bool, ts: float, events: list[Event]) -> int:
        n = len(data)
        off = 0
        stats = self.stats
        while n - off >= 4:
            if data[off] != 3 or data[off + 1] != 0:
                off = self._junk_run(data, off, d)
                continue
            length = (data[off + 2] << 8) | data[off + 3]
            if length < 7:
                if not self._confirmed:
                    raise ProtocolViolation(f"tpkt length {length} below 7", self._pos[d] + off)
                if length < 4:
                    off = self._junk_run(data, off, d)
                    continue
            end = off + length
            if end > n:
                break
            stats["tpkts"] += 1
            ev = self._tpkt(data, off, end, d, to_server, ts)
            if ev is not None:
                junk = self._junk[d]
                if junk:
                    ev["s7comm.junk_bytes"] = junk
                    _flag(ev, "junk-before-tpkt")
                    self._junk[d] = 0
                if "s7comm.anomaly" in ev:
                    ev["event.type"] = _ERROR_TYPE
                    stats["anomalies"] += 1
                unit = self._unit_fields
                if unit and "ics.unit" not in ev:
                    ev.update(unit)
                stats["messages"] += 1
                events.append(ev)
            off = end
        return off

    def _junk_run(self, data: bytes, off: int, d: int) -> int:
        """Skip to the next plausible TPKT header; before the first TPKT the flow is not ISO-on-TCP."""
        if not self._confirmed:
            raise ProtocolViolation("no tpkt header (version 3)", self._pos[d] + off)
        nxt = _next_tpkt(data, off + 1)
        stop = len(data) - 3 if nxt < 0 else nxt  # without a header: keep three octets, a header may start there
        skipped = stop - off
        self._junk[d] += skipped
        self.stats["junk_bytes"] += skipped
        if self._junk[d] > MAX_JUNK:
            raise ProtocolViolation(f"no tpkt header within {MAX_JUNK} bytes", self._pos[d] + stop)
        return stop

    def _find_frame(self, data: bytes, d: int) -> bytes:
        """After a gap: a TPKT header with a COTP header, followed by another TPKT header or the end."""
        n = len(data)
        i = _next_tpkt(data, 0)
        while 0 <= i:
            length = (data[i + 2] << 8) | data[i + 3]
            end = i + length
            if end > n:
                return self._skip(data, d, i, found=False)
            if end == n or (end + 4 <= n and _tpkt_header(data, end)) or (end < n and data[end] == 3):
                return self._skip(data, d, i, found=True)
            i = _next_tpkt(data, i + 1)
        return self._skip(data, d, max(0, n - 6), found=False)

    def _after_gap(self, d: int) -> None:
        self._dt[d] = None
        self._dt_count[d] = 0
        self._plus[d] = None
        self._junk[d] = 0
        for key in [k for k in self._ud if k[0] == d]:
            del self._ud[key]

    def finish(self, ts: float) -> list[Event]:
        """Jobs and userdata requests still unanswered are reported (at most MAX_REPORTED_UNANSWERED)."""
        events: list[Event] = []
        stats = self.stats
        for key, entry in self._pending.items():
            if key >> 18:  # S7comm-plus: many requests are not answered by design (transport flags)
                continue
            sent, name, operation = entry[0], entry[1], entry[2]
            if ts - sent > self.timeout:
                stats["requests_timed_out"] += 1
                continue
            stats["requests_unanswered"] += 1
            if len(events) >= MAX_REPORTED_UNANSWERED:
                continue
            ev: Event = {"event.action": "unanswered_request", "ics.function": name, "ics.operation": operation,
                         "ics.role": "request", "event.outcome": "unknown", "s7comm.protocol": "s7comm",
                         "s7comm.unanswered_pdu_ref": key & 0xFFFF, "s7comm.request_time_ms": int(sent * 1000.0)}
            ev.update(self._unit_fields)
            events.append(ev)
        self._pending.clear()
        return events

    # -- TPKT and COTP ------------------------------------------------------------------------------

    def _tpkt(self, buf: bytes, off: int, end: int, d: int, to_server: bool, ts: float) -> Event | None:
        length = end - off
        if length < 7:
            return _anomaly_event("invalid_pdu", "tpkt-too-short", length)
        li = buf[off + 4]
        code = buf[off + 5] >> 4
        if li < 1 or off + 5 + li > end:
            if not self._confirmed:
                raise ProtocolViolation(f"cotp length indicator {li} does not fit the tpkt", self._pos[d] + off)
            return _anomaly_event("invalid_pdu", "cotp-length-invalid", length)
        self._confirmed = True
        if code == 0xF and li < 2:
            return _anomaly_event("invalid_pdu", "cotp-length-invalid", length)
        if code == 0xF:
            eot = buf[off + 6] & 0x80
            start = off + 5 + li
            parts = self._dt[d]
            if parts is None and eot:
                if start == end:
                    self.stats["empty_dt"] += 1
                    return None
                return self._message(buf[start:end], d, to_server, ts, 1)
            if parts is None:
                parts = self._dt[d] = []
                self._dt_count[d] = 0
            parts.append(buf[start:end])
            self._dt_count[d] += end - start
            self.stats["cotp_fragments"] += 1
            if self._dt_count[d] > MAX_REASSEMBLY:
                self._dt[d] = None
                ev = _anomaly_event("invalid_pdu", "cotp-reassembly-overflow", length)
                ev["s7comm.cotp.fragments"] = len(parts)
                return ev
            if not eot:
                return None
            self._dt[d] = None
            message = b"".join(parts)
            if not message:
                self.stats["empty_dt"] += 1
                return None
            return self._message(message, d, to_server, ts, len(parts))
        return self._cotp(buf, off, end, li, code, d, to_server)

    def _cotp(self, buf: bytes, off: int, end: int, li: int, code: int, d: int, to_server: bool) -> Event:
        """A connection management TPDU (CR, CC, DR, DC, ER, ED, AK...)."""
        self.stats["cotp"] += 1
        spec = _COTP_TPDUS.get(code)
        if spec is None:
            ev = {"event.action": f"cotp_unknown-{code}", "ics.function": f"cotp_unknown-{code}",
                  "ics.operation": "other", "ics.role": "request" if to_server else "response",
                  "s7comm.protocol": "cotp", "s7comm.cotp.pdu_type": code, "s7comm.tpkt_length": end - off}
            _flag(ev, "cotp-unknown-type")
            return ev
        short, action, role = spec
        ev: Event = {"event.action": action, "ics.function": action, "ics.operation": _COTP_OPERATIONS[action],
                     "ics.role": role, "s7comm.protocol": "cotp", "s7comm.cotp.pdu_type": code,
                     "s7comm.cotp.pdu_name": short, "s7comm.tpkt_length": end - off}
        fixed = off + 6  # first octet after the TPDU code
        last = off + 5 + li  # end of the COTP header
        if code in (0xE, 0xD, 0x8, 0xC) and last - fixed >= 4:
            ev["s7comm.cotp.dst_ref"], ev["s7comm.cotp.src_ref"] = _HH.unpack_from(buf, fixed)
        if code in (0xE, 0xD):
            if last - fixed < 5:
                _flag(ev, "cotp-length-invalid")
                return ev
            ev["s7comm.cotp.class"] = buf[fixed + 4] >> 4
            calling, called, size = _tsaps(buf, fixed + 5, last)
            if size:
                ev["s7comm.cotp.tpdu_size"] = size
            if calling is not None:
                ev["s7comm.cotp.calling_tsap"] = _tsap_text(calling)
            if called is not None:
                ev["s7comm.cotp.called_tsap"] = _tsap_text(called)
                self._set_unit(called, ev)
            if code == 0xD:
                ev["ics.status"] = "ok"
                ev["event.outcome"] = "success"
        elif code == 0x8 and last - fixed >= 5:
            reason = buf[fixed + 4]
            ev["s7comm.cotp.reason_code"] = reason
            ev["s7comm.cotp.reason"] = _coded(_DISCONNECT_REASONS, reason)
        elif code == 0x7 and last - fixed >= 3:
            cause = buf[fixed + 2]
            ev["s7comm.cotp.reason_code"] = cause
            ev["s7comm.cotp.reason"] = _coded(_REJECT_CAUSES, cause)
            ev["ics.status"] = _coded(_REJECT_CAUSES, cause)
            ev["event.outcome"] = "failure"
        elif code == 0xC:
            ev["ics.status"] = "ok"
            ev["event.outcome"] = "success"
        return ev

    def _set_unit(self, called: bytes, ev: Event) -> None:
        """Rack and slot (and the connection type) from the called TSAP: the CPU every later event addresses."""
        if len(called) != 2:
            return
        kind, where = called[0], called[1]
        rack, slot = where >> 5, where & 0x1F
        self._unit = f"{rack}/{slot}"
        self._unit_fields = {"ics.unit": self._unit, "s7comm.rack": rack, "s7comm.slot": slot,
                             "s7comm.connection_type": _CONNECTION_TYPES.get(kind, f"type-{kind}")}
        ev.update(self._unit_fields)

    # -- dispatch on the protocol id ----------------------------------------------------------------

    def _message(self, msg: bytes, d: int, to_server: bool, ts: float, frags: int) -> Event | None:
        pid = msg[0]
        if pid == _PROTOCOL_S7:
            self._s7 = True
            self.stats["s7comm"] += 1
            ev = self._s7comm(msg, d, to_server, ts)
        elif pid == _PROTOCOL_PLUS:
            self._s7 = True
            ev = self._s7plus(msg, d, to_server, ts)
            if ev is None:
                return None
            self.stats["s7comm_plus"] += 1
        else:
            if not self._s7:
                raise ProtocolViolation(f"cotp data is not s7comm (protocol id 0x{pid:02x})", self._pos[d])
            ev = _anomaly_event("invalid_pdu", "unknown-protocol-id", len(msg))
            ev["s7comm.protocol_id"] = pid
            return ev
        if frags > 1:
            ev["s7comm.cotp.fragments"] = frags
        return ev

    # -- S7comm ---------------------------------------------------------------------------------------

    def _s7comm(self, pdu: bytes, d: int, to_server: bool, ts: float) -> Event:
        n = len(pdu)
        if n < 10:
            ev = _anomaly_event("invalid_pdu", "s7-header-truncated", n)
            ev["s7comm.protocol"] = "s7comm"
            return ev
        _, rosctr, _, ref, plen, dlen = _S7_HEAD.unpack_from(pdu, 0)
        ev: Event = {"s7comm.protocol": "s7comm", "s7comm.rosctr": rosctr, "s7comm.pdu_ref": ref,
                     "s7comm.param_length": plen, "s7comm.data_length": dlen}
        head = 10
        if rosctr == ACK or rosctr == ACK_DATA:
            head = 12
            if n < 12:
                ev["event.action"] = ev["ics.function"] = "invalid_pdu"
                ev["ics.operation"] = "other"
                ev["ics.role"] = "response"
                _flag(ev, "s7-header-truncated")
                return ev
            cls, code = pdu[10], pdu[11]
            ev["s7comm.error_class"] = cls
            ev["s7comm.error_code"] = code
            if cls or code:
                ev["s7comm.error"] = cls << 8 | code
        p0 = head
        p1 = head + plen
        d1 = p1 + dlen
        if d1 != n:
            _flag(ev, "s7-length-mismatch")
            if p1 > n:
                p1 = n
            if d1 > n:
                d1 = n
        if self._pdu_size and n > self._pdu_size:
            _flag(ev, "pdu-exceeds-negotiated-size")
        if rosctr == JOB:
            self._job(pdu, p0, p1, d1, d, ev, ts)
        elif rosctr == ACK_DATA or rosctr == ACK:
            self._ack(pdu, p0, p1, d1, d, ev, ts, rosctr)
        elif rosctr == USERDATA:
            self._userdata(pdu, p0, p1, d1, d, ev, ts)
        else:
            name = f"rosctr_unknown-{rosctr}"
            ev["event.action"] = ev["ics.function"] = name
            ev["ics.operation"] = "other"
            ev["ics.role"] = "request" if to_server else "response"
            _flag(ev, "unknown-rosctr")
        return ev

    def _job(self, pdu: bytes, p0: int, p1: int, d1: int, d: int, ev: Event, ts: float) -> None:
        ev["s7comm.rosctr_name"] = "job"
        ev["ics.role"] = "request"
        if p1 <= p0:
            ev["event.action"] = ev["ics.function"] = "unknown-none"
            ev["ics.operation"] = "other"
            _flag(ev, "job-without-parameters")
            return
        func = pdu[p0]
        ev["s7comm.function_code"] = func
        spec = _JOB_FUNCTIONS.get(func)
        if spec is None:
            name = f"unknown-{func}"
            operation = "other"
            _flag(ev, "unknown-function")
        else:
            name, operation, _ = spec
        items: _Items | None = None
        extra: dict[str, Any] | None = None
        if func == READ_VAR or func == WRITE_VAR:
            items = self._items(pdu, p0, p1)
            ev.update(items.fields)
            if items.anomaly:
                _flag(ev, items.anomaly)
            if items.single:
                ev["ics.address_start"], ev["ics.address_count"] = items.single
            if func == WRITE_VAR:
                values: list[float] = []
                codes, sizes, lengths, anomaly = _data_items(pdu, p1, d1, items, values)
                ev["s7comm.data.return_code"] = codes
                ev["s7comm.data.transport_size"] = sizes
                ev["s7comm.data.length"] = lengths
                if values:
                    ev["ics.values"] = values
                if anomaly:
                    _flag(ev, anomaly)
        elif func == SETUP:
            _setup(pdu, p0, p1, ev)
        elif func in _BLOCK_CONTROL:
            extra = _block_control_request(pdu, p0, p1, func, ev)
        elif func == PI_SERVICE:
            operation = _pi_service(pdu, p0, p1, ev)
            extra = {"s7comm.pi_service": ev.get("s7comm.pi_service")}
        elif func == PLC_STOP:
            _plc_stop(pdu, p0, p1, ev)
        ev["event.action"] = ev["ics.function"] = name
        ev["ics.operation"] = operation
        self._remember(d << 16 | ev["s7comm.pdu_ref"], (ts, name, operation, func, items, extra, ev.get("ics.tag")))

    def _items(self, pdu: bytes, p0: int, p1: int) -> _Items:
        key = pdu[p0:p1]
        items = self._cache.get(key)
        if items is None:
            items = _parse_items(pdu, p0, p1)
            if len(self._cache) >= MAX_CACHE:
                self._cache.clear()
            self._cache[key] = items
        if items.count > MAX_ITEMS:
            self.stats["items_truncated"] += items.count - MAX_ITEMS
        return items

    def _ack(self, pdu: bytes, p0: int, p1: int, d1: int, d: int, ev: Event, ts: float, rosctr: int) -> None:
        ev["s7comm.rosctr_name"] = _ROSCTR_NAMES[rosctr]
        ev["ics.role"] = "response"
        entry = self._pair((1 - d) << 16 | ev["s7comm.pdu_ref"], ts, ev)
        func = pdu[p0] if p1 > p0 else (entry[3] if entry is not None else -1)
        if p1 > p0:
            ev["s7comm.function_code"] = func
        if entry is not None:
            name, operation = entry[1], entry[2]
            if entry[3] != func:
                _flag(ev, "response-function-mismatch")
        elif func >= 0:
            spec = _JOB_FUNCTIONS.get(func)
            name, operation = (spec[0], spec[1]) if spec else (f"unknown-{func}", "other")
        else:
            name, operation = "ack", "other"
        cls = ev.get("s7comm.error_class", 0)
        error = ev.get("s7comm.error")
        status = "ok"
        if error:
            status = _ERROR_CLASSES.get(cls) or f"error-0x{error:04x}"
            text = _ERROR_TEXTS.get(error)
            if text:
                ev["s7comm.error_text"] = text
        items = entry[4] if entry is not None else None
        if func == READ_VAR and p1 > p0:
            count = pdu[p0 + 1] if p1 - p0 >= 2 else 0
            ev["s7comm.item_count"] = count
            plan = items.plan if items is not None else None
            if plan is not None and d1 - p1 == plan.length and plan.headers.unpack_from(pdu, p1) == plan.expected:
                codes, sizes, lengths, anomaly = plan.codes, plan.sizes, plan.lengths, None
                values = list(plan.values.unpack_from(pdu, p1))
                for i in plan.bits:
                    values[i] &= 1
                if plan.floats:
                    values = [v for v in values if v.__class__ is int or math.isfinite(v)]
            else:
                values = []
                codes, sizes, lengths, anomaly = _read_data(pdu, p1, d1, count, items, values)
                if items is not None and anomaly is None and count == items.count:
                    items.plan = _make_plan(items, codes, sizes, lengths, pdu, p1, d1)
            ev["s7comm.data.return_code"] = codes
            ev["s7comm.data.transport_size"] = sizes
            ev["s7comm.data.length"] = lengths
            if values:
                ev["ics.values"] = values
            if anomaly:
                _flag(ev, anomaly)
            if items is not None and items.count != count:
                _flag(ev, "response-item-count-mismatch")
            status = _item_status(codes, status)
        elif func == WRITE_VAR and p1 > p0:
            count = pdu[p0 + 1] if p1 - p0 >= 2 else 0
            ev["s7comm.item_count"] = count
            codes = tuple(pdu[p1:min(d1, p1 + MAX_ITEMS)])
            ev["s7comm.data.return_code"] = codes
            if len(codes) != count:
                _flag(ev, "data-item-truncated" if len(codes) < count else "item-count-mismatch")
            if items is not None and items.count != count:
                _flag(ev, "response-item-count-mismatch")
            status = _item_status(codes, status)
        elif func == SETUP and p1 > p0:
            _setup(pdu, p0, p1, ev)
            size = ev.get("s7comm.setup.pdu_size")
            if size and status == "ok":
                self._pdu_size = size
        elif func in _BLOCK_CONTROL and p1 > p0:
            _block_control_response(pdu, p0, p1, d1, func, ev)
        if entry is not None:
            extra = entry[5]
            if extra:
                for key, value in extra.items():
                    if value is not None and key not in ev:
                        ev[key] = value
            if entry[6] is not None:
                ev["ics.tag"] = entry[6]
                if items is not None and items.single:
                    ev["ics.address_start"], ev["ics.address_count"] = items.single
            if func == PI_SERVICE and extra:
                service = extra.get("s7comm.pi_service")
                if service in _PI_SERVICES:
                    operation = _PI_SERVICES[service][0]
        ev["event.action"] = ev["ics.function"] = name
        ev["ics.operation"] = operation
        ev["ics.status"] = status
        ev["event.outcome"] = "success" if status == "ok" else "failure"

    # -- userdata ---------------------------------------------------------------------------------

    def _userdata(self, pdu: bytes, p0: int, p1: int, d1: int, d: int, ev: Event, ts: float) -> None:
        ev["s7comm.rosctr_name"] = "userdata"
        if p1 - p0 < 8:
            ev["event.action"] = ev["ics.function"] = "userdata_unknown-none"
            ev["ics.operation"] = "other"
            ev["ics.role"] = "request" if d == 0 else "response"
            _flag(ev, "userdata-parameters-truncated")
            return
        method, tg, sub, seq = pdu[p0 + 4], pdu[p0 + 5], pdu[p0 + 6], pdu[p0 + 7]
        typ, group = tg >> 4, tg & 0x0F
        ev["s7comm.userdata.method"] = method
        ev["s7comm.userdata.type"] = typ
        ev["s7comm.userdata.type_name"] = _UD_TYPES.get(typ, f"unknown-{typ}")
        ev["s7comm.userdata.group"] = group
        ev["s7comm.userdata.group_name"] = _coded(_GROUPS, group)
        ev["s7comm.userdata.sequence"] = seq
        role = _UD_ROLES.get(typ) or ("request" if d == 0 else "response")
        ev["ics.role"] = role
        more = False
        error = 0
        if p1 - p0 >= 12 and pdu[p0 + 3] >= 8:
            ev["s7comm.userdata.data_unit_ref"] = pdu[p0 + 8]
            more = pdu[p0 + 9] == 1
            ev["s7comm.userdata.last_data_unit"] = pdu[p0 + 9]
            error = _H.unpack_from(pdu, p0 + 10)[0]
            ev["s7comm.error"] = error
            if error:
                text = _ERROR_TEXTS.get(error)
                if text:
                    ev["s7comm.error_text"] = text
        if group == GROUP_MODE:
            name, operation = "mode_transition", "mode_change"
            ev["s7comm.mode_code"] = sub
            ev["s7comm.mode"] = _coded(_MODES, sub)
        else:
            ev["s7comm.userdata.subfunction"] = sub
            spec = _USERDATA.get((group, sub))
            if spec is not None:
                name, operation = spec[0], spec[1]
            elif group in _GROUPS:
                name, operation = f"{_GROUPS[group]}_unknown-{sub}", "other"
            else:
                name, operation = f"userdata_unknown-{group}", "other"
        # The data part: return code, transport size, length, then the function's data.
        rc = -1
        o, e = p1, p1
        if d1 - p1 >= 4:
            rc, dsize, length = _DATA_ITEM.unpack_from(pdu, p1)
            nbytes = (length + 7) >> 3 if dsize in _BIT_LENGTHS else length
            ev["s7comm.data.return_code"] = (rc,)
            ev["s7comm.data.transport_size"] = (dsize,)
            ev["s7comm.data.length"] = (nbytes,)
            o = p1 + 4
            e = o + nbytes
            if e > d1:
                _flag(ev, "data-item-truncated")
                e = d1
        elif d1 > p1:
            _flag(ev, "data-item-truncated")
        key = (1 - d if role == "request" else d, group << 8 | sub, seq)
        if group == GROUP_CPU and sub == 0x01:
            operation = self._szl(pdu, o, e, d, role, rc, more, key, ev, operation)
        elif rc == _OK:
            if group == GROUP_TIME and (sub in (0x01, 0x03) and role == "response" or sub in (0x02, 0x04)
                                        and role == "request"):
                if e - o >= 10:
                    clock = _s7_time(pdu, o + 2)
                    if clock is None:
                        _flag(ev, "invalid-clock")
                    else:
                        ev["s7comm.clock"] = clock
            elif group == GROUP_BLOCK:
                _block_function(pdu, o, e, sub, role, ev)
            elif group == GROUP_PROGRAMMER and (sub == 0x02 or sub == 0x08) and e - o >= 4:
                _tis_variables(pdu, o, e, sub, typ, ev)
            elif group == GROUP_CPU and sub == 0x03 and e - o >= 20:
                _diagnostic_message(pdu, o, ev)
        # Pairing: requests by direction and PDU reference; pushes stand alone.
        ref = ev["s7comm.pdu_ref"]
        if role == "request" and typ == 0x4:
            self._remember(1 << 17 | d << 16 | ref, (ts, name, operation, tg << 8 | sub, None, None, None))
        elif role == "response" and typ == 0x8:
            self._pair(1 << 17 | (1 - d) << 16 | ref, ts, ev)
        if role == "response":
            if error:
                status = _ERROR_CLASSES.get(error >> 8) or f"error-0x{error:04x}"
            elif rc in (_OK, 0x0A, -1, 0x00):
                status = "ok"
            else:
                status = _coded(_RETURN_CODES, rc)
            ev["ics.status"] = status
            ev["event.outcome"] = "success" if status == "ok" else "failure"
        ev["event.action"] = ev["ics.function"] = name
        ev["ics.operation"] = operation

    def _szl(self, pdu: bytes, o: int, e: int, d: int, role: str, rc: int, more: bool,
             key: tuple[int, int, int], ev: Event, operation: str) -> str:
        """Read SZL: the request names the list; the response carries it, possibly in several fragments."""
        if role == "request":
            state = self._ud.get(key)
            if e - o >= 4:
                szl_id, index = _HH.unpack_from(pdu, o)
                ev["s7comm.szl.id"] = szl_id
                ev["s7comm.szl.index"] = index
                ev["s7comm.szl.name"] = _SZL_LISTS.get(szl_id & 0xFF, f"unknown-{szl_id & 0xFF}")
                return "identity" if szl_id & 0xFF in _IDENTITY_LISTS else operation
            if state is not None:  # a follow-up request for the next fragment
                return "identity" if state[1] & 0xFF in _IDENTITY_LISTS else operation
            return operation
        state = self._ud.get(key)
        if state is not None:
            parts = state[0]
            parts.append(pdu[o:e])
            state[2] += e - o
            self.stats["userdata_fragments"] += 1
            ev["s7comm.userdata.fragments"] = len(parts)
            if state[2] > MAX_REASSEMBLY:
                del self._ud[key]
                _flag(ev, "userdata-reassembly-overflow")
                return operation
            if more:
                return "identity" if state[1] & 0xFF in _IDENTITY_LISTS else operation
            del self._ud[key]
            data = b"".join(parts)
            o, e = 0, len(data)
        else:
            if rc != _OK or e - o < 8:
                return operation
            if more:
                if len(self._ud) >= 8:
                    self._ud.pop(next(iter(self._ud)))
                self._ud[key] = [[pdu[o:e]], _H.unpack_from(pdu, o)[0], e - o]
                self.stats["userdata_fragments"] += 1
                return "identity" if pdu[o + 1] in _IDENTITY_LISTS else operation
            data = pdu
        if e - o < 8:
            return operation
        szl_id, index, size, count = _HHHH.unpack_from(data, o)
        ev["s7comm.szl.id"] = szl_id
        ev["s7comm.szl.index"] = index
        ev["s7comm.szl.name"] = _SZL_LISTS.get(szl_id & 0xFF, f"unknown-{szl_id & 0xFF}")
        ev["s7comm.szl.record_length"] = size
        ev["s7comm.szl.record_count"] = count
        o += 8
        present = (e - o) // size if size else 0
        if szl_id & 0x0F00 == 0x0F00:  # partial list extract 0xF: the header (record count) only
            present = 0
        elif size and present < count:
            _flag(ev, "szl-truncated")
        records = min(count, present)
        if records > MAX_RECORDS:
            self.stats["records_truncated"] += records - MAX_RECORDS
            records = MAX_RECORDS
        kind = szl_id & 0xFF
        if kind == 0x11 and size >= 28:
            _module_identification(data, o, size, records, ev)
        elif kind == 0x1C and size >= 34:
            _component_identification(data, o, size, records, ev)
        elif kind == 0x24 and size >= 4 and records:
            bzu = data[o + 3]
            ev["s7comm.cpu_mode"] = _CPU_MODES.get(bzu & 0x0F, f"unknown-{bzu & 0x0F}")
            ev["s7comm.cpu_previous_mode"] = _CPU_MODES.get(bzu >> 4, f"unknown-{bzu >> 4}")
        return "identity" if kind in _IDENTITY_LISTS else operation

    # -- pairing --------------------------------------------------------------------------------------

    def _remember(self, key: int, entry: tuple[Any, ...]) -> None:
        pending = self._pending
        if key in pending:
            del pending[key]
        elif pending:
            oldest = next(iter(pending))
            if entry[0] - pending[oldest][0] > self.timeout:
                del pending[oldest]
                self.stats["requests_timed_out"] += 1
            elif len(pending) >= self.max_outstanding:
                del pending[oldest]
                self.stats["requests_dropped"] += 1
        pending[key] = entry

    def _pair(self, key: int, ts: float, ev: Event) -> tuple[Any, ...] | None:
        entry = self._pending.pop(key, None)
        if entry is None:
            self.stats["unpaired_responses"] += 1
            return None
        sent = entry[0]
        if ts - sent > self.timeout:
            self.stats["requests_timed_out"] += 1
            self.stats["unpaired_responses"] += 1
            return None
        self.stats["paired"] += 1
        ev["s7comm.request_time_ms"] = int(sent * 1000.0)
        ev["s7comm.response_time_ms"] = round((ts - sent) * 1000.0, 3)
        return entry

    # -- S7comm-plus ------------------------------------------------------------------------------------

    def _s7plus(self, msg: bytes, d: int, to_server: bool, ts: float) -> Event | None:
        n = len(msg)
        ver = msg[1] if n > 1 else -1
        ev: Event = {"s7comm.protocol": "s7comm-plus", "s7comm.plus.version": ver}
        if n < 4:
            ev["event.action"] = ev["ics.function"] = "invalid_pdu"
            ev["ics.operation"] = "other"
            ev["ics.role"] = "request" if to_server else "response"
            _flag(ev, "plus-truncated")
            return ev
        if ver == 0xFF:
            ev["event.action"] = ev["ics.function"] = "keep_alive"
            ev["ics.operation"] = "session"
            ev["ics.role"] = "unsolicited"
            ev["s7comm.plus.keep_alive_sequence"] = msg[2]
            return ev
        dlen = _H.unpack_from(msg, 2)[0]
        ev["s7comm.plus.data_length"] = dlen
        if ver == 0xFE:
            ev["event.action"] = ev["ics.function"] = "extended_keep_alive"
            ev["ics.operation"] = "session"
            ev["ics.role"] = "unsolicited"
            if n >= 12:
                ev["s7comm.plus.confirmed_bytes"] = _I.unpack_from(msg, 8)[0]
            if dlen > 16 and n >= 4 + dlen:
                ev["s7comm.plus.message"] = _text(msg[20:4 + dlen])
            return ev
        if ver not in _PLUS_VERSIONS:
            _flag(ev, "plus-unknown-version")
        o = 4
        if ver == 3 and n > 4:
            digest = msg[4]
            ev["s7comm.plus.integrity"] = True
            ev["s7comm.plus.digest_length"] = digest
            o = 5 + digest
        else:
            ev["s7comm.plus.integrity"] = False
        end = 4 + dlen
        trailer = n > end  # as Wireshark decides: octets beyond the declared data are the trailer
        body = msg[o:min(end, n)] if o < end else b""
        state = self._plus[d]
        if not trailer:
            if state is None:
                self._plus[d] = [[body], len(body), 1, ver]
            else:
                state[0].append(body)
                state[1] += len(body)
                state[2] += 1
                if state[1] > MAX_REASSEMBLY:
                    self._plus[d] = None
                    ev["event.action"] = ev["ics.function"] = "invalid_pdu"
                    ev["ics.operation"] = "other"
                    ev["ics.role"] = "request" if to_server else "response"
                    _flag(ev, "plus-reassembly-overflow")
                    return ev
            self.stats["plus_fragments"] += 1
            return None
        if state is not None:
            self._plus[d] = None
            state[0].append(body)
            body = b"".join(state[0])
            ev["s7comm.plus.fragments"] = state[2] + 1
            self.stats["plus_fragments"] += 1
        if n < end + 4 or msg[end] != _PROTOCOL_PLUS or msg[end + 1] != ver:
            _flag(ev, "plus-trailer-mismatch")
        self._plus_data(body, d, ts, ev)
        return ev

    def _plus_data(self, body: bytes, d: int, ts: float, ev: Event) -> None:
        n = len(body)
        if n < 1:
            ev["event.action"] = ev["ics.function"] = "invalid_pdu"
            ev["ics.operation"] = "other"
            ev["ics.role"] = "request" if d == 0 else "response"
            _flag(ev, "plus-truncated")
            return
        opcode = body[0]
        ev["s7comm.plus.opcode"] = opcode
        ev["s7comm.plus.opcode_name"] = _coded(_PLUS_OPCODES, opcode)
        role = _PLUS_ROLES.get(opcode)
        if role is None:
            ev["event.action"] = ev["ics.function"] = f"plus_unknown-{opcode}"
            ev["ics.operation"] = "other"
            ev["ics.role"] = "request" if d == 0 else "response"
            _flag(ev, "plus-unknown-opcode")
            return
        ev["ics.role"] = role
        if opcode == 0x33:
            ev["event.action"] = ev["ics.function"] = "notification"
            ev["ics.operation"] = "report"
            if n >= 5:
                ev["s7comm.plus.subscription_id"] = _I.unpack_from(body, 1)[0]
            return
        if n < 10:
            ev["event.action"] = ev["ics.function"] = "invalid_pdu"
            ev["ics.operation"] = "other"
            _flag(ev, "plus-truncated")
            return
        _, func, _, seq = _PLUS_HEAD.unpack_from(body, 1)
        ev["s7comm.plus.function_code"] = func
        ev["s7comm.plus.sequence"] = seq
        spec = _PLUS_FUNCTIONS.get(func)
        name, operation = spec if spec else (f"plus_unknown-{func}", "other")
        ev["s7comm.plus.function"] = name
        if spec is None:
            _flag(ev, "plus-unknown-function")
        if role == "request":
            if n >= 13:
                ev["s7comm.plus.session_id"] = _I.unpack_from(body, 9)[0]
            if n >= 14:
                ev["s7comm.plus.transport_flags"] = body[13]
            o = 14
            if func in _PLUS_OBJECT_FIRST and n >= o + 4:
                object_id = _I.unpack_from(body, o)[0]
                if object_id:
                    ev["s7comm.plus.object_id"] = object_id
                if func in _PLUS_ITEM_COUNT:
                    count, nxt = _varuint(body, o + 4, n)
                    if nxt > 0:
                        ev["s7comm.plus.item_count"] = count
                        ev["ics.address_count"] = count
            self._remember(1 << 18 | d << 16 | seq, (ts, name, operation, func, None,
                                                     {"s7comm.plus.session_id": ev.get("s7comm.plus.session_id")},
                                                     None))
        else:
            if n >= 10:
                ev["s7comm.plus.transport_flags"] = body[9]
            entry = self._pair(1 << 18 | (1 - d) << 16 | seq, ts, ev)
            if entry is not None:
                session = entry[5].get("s7comm.plus.session_id")
                if session is not None:
                    ev["s7comm.plus.session_id"] = session
                if entry[3] != func:
                    _flag(ev, "response-function-mismatch")
            value, nxt = _varuint(body, 10, n, limit=9)
            status = "ok"
            if nxt > 0:
                code = value & 0xFFFF
                if code >= 0x8000:
                    code -= 0x10000
                ev["s7comm.plus.return_value"] = value
                ev["s7comm.plus.error_code"] = code
                if code < 0:
                    status = _PLUS_ERRORS.get(code) or f"error-{code}"
            ev["ics.status"] = status
            ev["event.outcome"] = "success" if status == "ok" else "failure"
        ev["event.action"] = ev["ics.function"] = name
        ev["ics.operation"] = operation


# -- helpers without session state ------------------------------------------------------------------


def _flag(ev: Event, reason: str) -> None:
    anomalies = ev.get("s7comm.anomaly")
    if anomalies is None:
        ev["s7comm.anomaly"] = [reason]
    elif reason not in anomalies:
        anomalies.append(reason)


def _anomaly_event(action: str, reason: str, length: int) -> Event:
    return {"event.action": action, "ics.function": action, "ics.operation": "other", "ics.role": "request",
            "s7comm.protocol": "cotp", "s7comm.tpkt_length": length, "s7comm.anomaly": [reason]}


_CLASS0_TPDUS = frozenset({0xE, 0xD, 0x8, 0xC, 0x7})


def _tpkt_header(buf: bytes, i: int) -> bool:
    """A plausible TPKT header with a COTP header at ``buf[i]`` (four octets or more present): what a
    scan for the next message (after junk or a gap) accepts. Only the TPDUs class 0 uses, and a DT must
    carry TPDU number 0 and start an S7comm or S7comm-plus message, so data that merely contains
    ``03 00`` is rarely taken for a header."""
    if buf[i] != 3 or buf[i + 1] != 0:
        return False
    length = (buf[i + 2] << 8) | buf[i + 3]
    if length < 7:
        return False
    n = len(buf)
    if i + 6 > n:
        return True
    li = buf[i + 4]
    code = buf[i + 5] >> 4
    if li + 5 > length:
        return False
    if code == 0xF:
        if li != 2:
            return False
        if i + 7 <= n and buf[i + 6] & 0x7F:
            return False
        return i + 8 > n or buf[i + 7] in (_PROTOCOL_S7, _PROTOCOL_PLUS) or (length == 7 and buf[i + 6] == 0x80)
    return code in _CLASS0_TPDUS and li >= (3 if code == 0x7 else 6 if code in (0xE, 0xD, 0x8) else 5)


def _next_tpkt(buf: bytes, start: int) -> int:
    """Offset of the next plausible TPKT header at or after ``start``, or -1."""
    i = buf.find(b"\x03\x00", start)
    n = len(buf)
    while 0 <= i:
        if i + 4 > n:
            return -1
        if _tpkt_header(buf, i):
            return i
        i = buf.find(b"\x03\x00", i + 1)
    return -1


def _tsap_text(tsap: bytes) -> str:
    """Two-octet TSAPs in hex (``0102``); TIA Portal names (``SIMATIC-ROOT-HMI``) as text."""
    if len(tsap) > 2 and all(0x20 <= b < 0x7F for b in tsap):
        return tsap.decode("ascii")
    return tsap.hex()


def _item_status(codes: tuple[int, ...], status: str) -> str:
    if status != "ok":
        return status
    for code in codes:
        if code != _OK:
            return _coded(_RETURN_CODES, code)
    return status


def _data_items(pdu: bytes, o: int, e: int, items: _Items, values: list[float]
                ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], str | None]:
    """The data items of a write-var request (one per item: return code, transport size, length, data)."""
    return _read_data(pdu, o, e, items.count, items, values, write=True)


def _read_data(pdu: bytes, o: int, e: int, count: int, items: _Items | None, values: list[float],
               write: bool = False, tis: bool = False
               ) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], str | None]:
    """Data items of a read-var response or write-var request (return code, transport size, length, data;
    a fill octet after odd lengths); values decoded by the request's transport sizes when known.

    A failed item of a read response carries no data whatever its length says; write requests (return
    code 0) and TIS data always carry theirs, and TIS data pads the last item too.
    """
    codes: list[int] = []
    sizes: list[int] = []
    lengths: list[int] = []
    decoders = items.decoders if items is not None else ()
    known = len(decoders)
    anomaly = None
    last = count - 1
    unpack = _DATA_ITEM.unpack_from
    bit_lengths = _BIT_LENGTHS
    for k in range(count):
        if o + 4 > e:
            anomaly = "data-item-truncated"
            break
        rc, dsize, length = unpack(pdu, o)
        nbytes = (length + 7) >> 3 if dsize in bit_lengths else length
        o += 4
        if k < MAX_ITEMS:
            codes.append(rc)
            sizes.append(dsize)
            lengths.append(nbytes)
        if rc != _OK and not write:
            continue
        if o + nbytes > e:
            anomaly = "data-item-truncated"
            nbytes = e - o
        dec = decoders[k] if k < known else None
        _values(pdu, o, nbytes, dec, dsize, values)
        if write and dec is not None and dec[0] != nbytes and dec[1] is not None and anomaly is None:
            anomaly = "write-length-mismatch"
        o += nbytes
        if nbytes & 1 and (tis or k < last):
            o += 1
    if anomaly is None and o < e:
        anomaly = "item-count-mismatch"
    return tuple(codes), tuple(sizes), tuple(lengths), anomaly


def _setup(pdu: bytes, p0: int, p1: int, ev: Event) -> None:
    if p1 - p0 < 8:
        _flag(ev, "setup-truncated")
        return
    _, _, calling, called, size = _SETUP.unpack_from(pdu, p0)
    ev["s7comm.setup.max_amq_calling"] = calling
    ev["s7comm.setup.max_amq_called"] = called
    ev["s7comm.setup.pdu_size"] = size
    if size < 64 or calling == 0 or called == 0:
        _flag(ev, "setup-invalid")


def _filename(pdu: bytes, o: int, p1: int, ev: Event) -> int:
    """A length-prefixed block file name (``_0A00001P``) at ``o``; returns the offset after it (-1: cut)."""
    if o >= p1:
        return -1
    length = pdu[o]
    if o + 1 + length > p1:
        _flag(ev, "filename-truncated")
        return -1
    name = pdu[o + 1:o + 1 + length].decode("latin-1")
    ev["s7comm.filename"] = name
    block = _block(name[1:] if len(name) == 9 else name)
    if block is not None:
        code, kind, number, fs = block
        ev["s7comm.block_type"] = kind
        ev["s7comm.block_number"] = number
        ev["s7comm.filesystem"] = _FILESYSTEMS.get(fs, f"unknown-{fs}")
        ev["ics.tag"] = (f"{kind}{number}",)
    return o + 1 + length


def _block_control_request(pdu: bytes, p0: int, p1: int, func: int, ev: Event) -> dict[str, Any] | None:
    """Request download, download block/ended, start upload, upload, end upload (job parameters)."""
    if p1 - p0 < 8:
        _flag(ev, "parameters-truncated")
        return None
    status = pdu[p0 + 1]
    ev["s7comm.function_status"] = status
    if func in (START_UPLOAD, UPLOAD, END_UPLOAD):
        ev["s7comm.upload_id"] = _I.unpack_from(pdu, p0 + 4)[0]
    if func in (UPLOAD, END_UPLOAD):
        return None
    o = _filename(pdu, p0 + 8, p1, ev)
    if func == REQUEST_DOWNLOAD and 0 < o < p1:
        part2 = pdu[o]
        if o + 1 + part2 <= p1 and part2 >= 13:
            text = pdu[o + 2:o + 1 + part2].decode("latin-1")
            load, mc7 = text[0:6], text[6:12]
            if _digits(load):
                ev["s7comm.load_memory_length"] = int(load)
            if _digits(mc7):
                ev["s7comm.mc7_length"] = int(mc7)
    extra = {k: ev[k] for k in ("s7comm.filename", "s7comm.block_type", "s7comm.block_number") if k in ev}
    return extra or None


def _block_control_response(pdu: bytes, p0: int, p1: int, d1: int, func: int, ev: Event) -> None:
    if p1 - p0 >= 2 and func in (DOWNLOAD_BLOCK, START_UPLOAD, UPLOAD):
        ev["s7comm.function_status"] = pdu[p0 + 1]
    if func == START_UPLOAD and p1 - p0 >= 9:
        ev["s7comm.upload_id"] = _I.unpack_from(pdu, p0 + 4)[0]
        length = pdu[p0 + 8]
        if p0 + 9 + length > p1:
            _flag(ev, "parameters-truncated")
            return
        text = pdu[p0 + 9:p0 + 9 + length].decode("latin-1")
        if _digits(text):
            ev["s7comm.block_length"] = int(text)
    elif func in (UPLOAD, DOWNLOAD_BLOCK) and d1 - p1 >= 4:
        length = _H.unpack_from(pdu, p1)[0]
        ev["s7comm.data.length"] = (length,)
        if p1 + 4 + length > d1:
            _flag(ev, "data-item-truncated")


def _pi_service(pdu: bytes, p0: int, p1: int, ev: Event) -> str:
    """PLC control: 7 unknown octets, parameter block (length-prefixed), service name (length-prefixed)."""
    if p1 - p0 < 10:
        _flag(ev, "pi-service-truncated")
        return "other"
    block_len = _H.unpack_from(pdu, p0 + 8)[0]
    b0 = p0 + 10
    b1 = b0 + block_len
    if b1 + 1 > p1:
        _flag(ev, "pi-service-truncated")
        return "other"
    name_len = pdu[b1]
    if b1 + 1 + name_len > p1:
        _flag(ev, "pi-service-truncated")
        return "other"
    service = pdu[b1 + 1:b1 + 1 + name_len].decode("latin-1")
    ev["s7comm.pi_service"] = service
    spec = _PI_SERVICES.get(service)
    if service in _BLOCK_SERVICES and block_len >= 2:
        blocks = pdu[b0]
        ev["s7comm.pi_block_count"] = blocks
        names: list[str] = []
        tags: list[str] = []
        o = b0 + 2
        for _ in range(min(blocks, MAX_RECORDS)):
            if o + 8 > b1:
                _flag(ev, "pi-service-truncated")
                break
            raw = pdu[o:o + 8].decode("latin-1")
            names.append(raw)
            block = _block(raw)
            if block is not None:
                tags.append(f"{block[1]}{block[2]}")
            o += 8
        if names:
            ev["s7comm.filename"] = tuple(names)
        if tags:
            ev["ics.tag"] = tuple(tags)
    elif block_len:
        argument = pdu[b0:b1].decode("latin-1")
        ev["s7comm.pi_argument"] = argument[:256]
        if service == "P_PROGRAM":
            ev["s7comm.start_type"] = "cold" if argument.startswith("C") else "hot"
    elif service == "P_PROGRAM":
        ev["s7comm.start_type"] = "hot"
    return spec[0] if spec else "other"


def _plc_stop(pdu: bytes, p0: int, p1: int, ev: Event) -> None:
    """PLC stop: 5 unknown octets, then the length-prefixed service name (``P_PROGRAM``)."""
    if p1 - p0 < 7:
        _flag(ev, "pi-service-truncated")
        return
    length = pdu[p0 + 6]
    if p0 + 7 + length > p1:
        _flag(ev, "pi-service-truncated")
        return
    ev["s7comm.pi_service"] = pdu[p0 + 7:p0 + 7 + length].decode("latin-1")


def _block_function(pdu: bytes, o: int, e: int, sub: int, role: str, ev: Event) -> None:
    """List blocks, list blocks of type, get block info (userdata group 3)."""
    if sub == 0x01 and role == "response":
        counts: dict[str, int] = {}
        for k in range(o, min(e, o + 4 * MAX_RECORDS) - 3, 4):
            code = pdu[k:k + 2].decode("latin-1").upper()
            counts[_BLOCK_TYPES.get(code, f"unknown-{code}")] = _H.unpack_from(pdu, k + 2)[0]
        ev["s7comm.block_counts"] = counts
        ev["s7comm.blocks_listed"] = sum(counts.values())
    elif sub == 0x02:
        if role == "request" and e - o >= 2:
            code = pdu[o:o + 2].decode("latin-1").upper()
            ev["s7comm.block_type"] = _BLOCK_TYPES.get(code, f"unknown-{code}")
        elif role == "response":
            numbers = [_H.unpack_from(pdu, k)[0] for k in range(o, e - 3, 4)]
            ev["s7comm.blocks_listed"] = len(numbers)
            ev["s7comm.block_numbers"] = numbers[:MAX_RECORDS]
    elif sub == 0x03 and role == "request" and e - o >= 8:
        block = _block(pdu[o:o + 8].decode("latin-1"))
        if block is not None:
            code, kind, number, fs = block
            ev["s7comm.block_type"] = kind
            ev["s7comm.block_number"] = number
            ev["s7comm.filesystem"] = _FILESYSTEMS.get(fs, f"unknown-{fs}")
            ev["ics.tag"] = (f"{kind}{number}",)


_VARSTAT_AREAS = {0x0: "M", 0x1: "I", 0x2: "Q", 0x3: "PI", 0x7: "DB"}
_VARSTAT_SIZES = "XBWD"
WORD_SIZE = 4


def _varstat_tag(area: int, rep: int, db: int, start: int) -> str:
    """A variable-table address (area/size code, repetition or bit, DB, start) in Step 7 notation."""
    if area == 0x54:
        return f"T{start}"
    if area == 0x64:
        return f"C{start}"
    prefix = _VARSTAT_AREAS.get(area >> 4)
    size = area & 0x0F
    if prefix is None or size > 3:
        return f"AREA{area}:{start}"
    letter = _VARSTAT_SIZES[size]
    if prefix == "DB":
        return f"DB{db}.DBX{start}.{rep}" if letter == "X" else f"DB{db}.DB{letter}{start}"
    return f"{prefix}{start}.{rep}" if letter == "X" else f"{prefix}{letter}{start}"


def _varstat_decoder(area: int, rep: int) -> tuple[int, struct.Struct | None, bool] | None:
    """How to decode the value of a variable-table address: by its size letter and repetition factor."""
    if area in (0x54, 0x64):
        return _decoder(WORD_SIZE, 1)
    if area >> 4 not in _VARSTAT_AREAS or area & 0x0F > 3:
        return None
    size = area & 0x0F
    if size == 0:
        return 1, None, False  # one bit: the octet after the repetition byte names it
    return _decoder((0, 2, 4, 6)[size], max(rep, 1))


def _tis_variables(pdu: bytes, o: int, e: int, sub: int, typ: int, ev: Event) -> None:
    """Variable status (monitor) and modify variable (programmer commands): the TIS parameter and data
    parts; requests name the variables (and for modify carry the values), pushes carry the values read or
    the per-variable return codes."""
    psize, dsize = _HH.unpack_from(pdu, o)
    t = o + 4 + psize
    te = min(t + dsize, e)
    if t + 2 > te:
        return
    count = _H.unpack_from(pdu, t)[0]
    ev["s7comm.variable_count"] = count
    t += 2
    values: list[float] = []
    codes: tuple[int, ...] = ()
    sizes: tuple[int, ...] = ()
    lengths: tuple[int, ...] = ()
    anomaly = None
    if typ == 0x4:
        tags: list[str] = []
        decoders: list[tuple[int, struct.Struct | None, bool] | None] = []
        for k in range(count):
            if t + 6 > te:
                anomaly = "item-truncated"
                break
            if k < MAX_ITEMS:
                area, rep = pdu[t], pdu[t + 1]
                tags.append(_varstat_tag(area, rep, _H.unpack_from(pdu, t + 2)[0], _H.unpack_from(pdu, t + 4)[0]))
                decoders.append(_varstat_decoder(area, rep))
            t += 6
        if tags:
            ev["ics.tag"] = tuple(tags)
        if sub == 0x08 and anomaly is None:
            typed = _Items(count, tuple(decoders), {}, None, None)
            codes, sizes, lengths, anomaly = _read_data(pdu, t, te, count, typed, values, write=True, tis=True)
    elif sub == 0x02:
        codes, sizes, lengths, anomaly = _read_data(pdu, t, te, count, None, values, tis=True)
    else:
        codes = tuple(pdu[t:min(te, t + count, t + MAX_ITEMS)])
        if len(codes) < min(count, MAX_ITEMS):
            anomaly = "data-item-truncated"
    if codes:
        ev["s7comm.data.return_code"] += codes
    if sizes:
        ev["s7comm.data.transport_size"] += sizes
        ev["s7comm.data.length"] += lengths
    if values:
        ev["ics.values"] = values
    if anomaly:
        _flag(ev, anomaly)


def _diagnostic_message(pdu: bytes, o: int, ev: Event) -> None:
    """A diagnostic buffer entry: event id, priority, OB, ..., S7 time stamp."""
    event_id = _H.unpack_from(pdu, o)[0]
    ev["s7comm.diagnostic.event_id"] = event_id
    ev["s7comm.diagnostic.event_class"] = _EVENT_CLASSES.get(event_id >> 12, f"unknown-{event_id >> 12}")
    when = _s7_time(pdu, o + 12)
    if when is not None:
        ev["s7comm.diagnostic.time"] = when


def _module_identification(data: bytes, o: int, size: int, records: int, ev: Event) -> None:
    """SZL 0x_11 records: index, order number (MLFB, 20 characters), module type, Ausbg, Ausbe."""
    for k in range(records):
        r = o + k * size
        index = _H.unpack_from(data, r)[0]
        mlfb = _text(data[r + 2:r + 22])
        ausbg, ausbe = _HH.unpack_from(data, r + 24)
        version = _version(ausbg, ausbe)
        if index == 0x0001:
            if mlfb:
                ev["s7comm.identity.order_number"] = mlfb
            ev.setdefault("s7comm.identity.hardware_version", version or str(ausbg))
        elif index == 0x0006:
            if mlfb and "s7comm.identity.order_number" not in ev:
                ev["s7comm.identity.order_number"] = mlfb
            if version:
                ev["s7comm.identity.hardware_version"] = version
        elif index == 0x0007 and version:
            ev["s7comm.identity.firmware_version"] = version
        elif index == 0x0081 and version:
            ev["s7comm.identity.boot_loader_version"] = version


def _component_identification(data: bytes, o: int, size: int, records: int, ev: Event) -> None:
    """SZL 0x_1C records: index and a 32-octet text (names, plant id, serial number...)."""
    for k in range(records):
        r = o + k * size
        index = _H.unpack_from(data, r)[0]
        name = _COMPONENT_FIELDS.get(index)
        if name is not None:
            text = _text(data[r + 2:r + 34])
            ev[f"s7comm.identity.{name}"] = text


# -- registration -------------------------------------------------------------------------------------


def _fields() -> tuple[Field, ...]:
    F = Field
    return (
        F("s7comm.protocol", "keyword", "What the message is: `cotp` (connection management or an invalid"
          " TPKT), `s7comm` (protocol id 0x32) or `s7comm-plus` (0x72)."),
        F("s7comm.tpkt_length", "integer", "COTP management TPDUs: the TPKT length (header included)."),
        F("s7comm.junk_bytes", "integer", "Bytes that were no TPKT header, skipped before this message."),
        F("s7comm.protocol_id", "short", "COTP data whose first octet is neither 0x32 nor 0x72: that octet."),
        F("s7comm.cotp.pdu_type", "short", "COTP TPDU code (high nibble): 14 CR, 13 CC, 8 DR, 12 DC, 7 ER, 15 DT,"
          " 1 ED, 2 EA, 5 RJ, 6 AK."),
        F("s7comm.cotp.pdu_name", "keyword", "COTP TPDU short name: CR, CC, DR, DC, ER, ED, EA, RJ, AK."),
        F("s7comm.cotp.dst_ref", "integer", "COTP destination reference (CR, CC, DR, DC)."),
        F("s7comm.cotp.src_ref", "integer", "COTP source reference (CR, CC, DR, DC)."),
        F("s7comm.cotp.class", "short", "COTP transport class requested/accepted (0 for ISO-on-TCP)."),
        F("s7comm.cotp.tpdu_size", "integer", "Maximum TPDU size in octets (CR/CC parameter 0xC0)."),
        F("s7comm.cotp.calling_tsap", "keyword", "Calling TSAP (the client's): hex for two octets (`0100`),"
          " text for TIA Portal names."),
        F("s7comm.cotp.called_tsap", "keyword", "Called TSAP (the PLC's): hex (`0102`: PG connection to rack 0"
          " slot 2) or a TIA Portal name (`SIMATIC-ROOT-HMI`)."),
        F("s7comm.cotp.reason_code", "short", "DR disconnect reason or ER reject cause."),
        F("s7comm.cotp.reason", "keyword", "Name of the disconnect reason (`normal`, `congestion`, ...) or"
          " reject cause."),
        F("s7comm.cotp.fragments", "short", "COTP DT TPDUs joined into this message (when more than one)."),
        F("s7comm.rack", "short", "Rack of the addressed CPU, from the called TSAP of the connection request."),
        F("s7comm.slot", "short", "Slot of the addressed CPU, from the called TSAP."),
        F("s7comm.connection_type", "keyword", "Connection type from the called TSAP: `pg` (programming"
          " device), `op` (operator panel/HMI), `s7_basic`, or `type-<n>`."),
        F("s7comm.rosctr", "short", "S7comm ROSCTR: 1 job, 2 ack, 3 ack-data, 7 userdata."),
        F("s7comm.rosctr_name", "keyword", "`job`, `ack`, `ack_data` or `userdata`."),
        F("s7comm.pdu_ref", "integer", "S7comm PDU reference (pairs a job with its ack)."),
        F("s7comm.param_length", "integer", "S7comm parameter length."),
        F("s7comm.data_length", "integer", "S7comm data length."),
        F("s7comm.error_class", "short", "Ack/ack-data header error class (0 none, 0x81 application"
          " relationship, 0x82 object definition, 0x83 resources, 0x84 service processing, 0x85 supplies,"
          " 0x87 access)."),
        F("s7comm.error_code", "short", "Ack/ack-data header error code (the octet after the class)."),
        F("s7comm.error", "integer", "Error as one number: header class << 8 | code when not zero, or the"
          " userdata parameter error code (always present in userdata responses and follow-ups)."),
        F("s7comm.error_text", "keyword", "Meaning of a well-known `s7comm.error` (`block not found`,"
          " `access to object refused`, ...)."),
        F("s7comm.function_code", "short", "Job/ack-data function: 0xF0 setup communication, 0x04 read var,"
          " 0x05 write var, 0x1A-0x1C download, 0x1D-0x1F upload, 0x28 PLC control, 0x29 PLC stop."),
        F("s7comm.setup.max_amq_calling", "integer", "Setup communication: parallel jobs the caller allows."),
        F("s7comm.setup.max_amq_called", "integer", "Setup communication: parallel jobs the called side allows."),
        F("s7comm.setup.pdu_size", "integer", "Setup communication: PDU size asked (job) or granted (ack-data);"
          " later PDUs larger than the granted size are anomalies."),
        F("s7comm.item_count", "short", "Read/write var: number of items the parameters declare."),
        F("s7comm.items_omitted", "short", f"Items beyond the {MAX_ITEMS} recorded."),
        F("s7comm.item.syntax_id", "short", "Per item: syntax id (0x10 S7ANY, 0xB2 DBREAD, 0x82 NCK...).",
          array=True),
        F("s7comm.item.transport_size", "short", "Per S7ANY item: transport size (1 BIT, 2 BYTE, 4 WORD, 5 INT,"
          " 6 DWORD, 7 DINT, 8 REAL, 28 COUNTER, 29 TIMER...).", array=True),
        F("s7comm.item.length", "integer", "Per S7ANY item: number of elements.", array=True),
        F("s7comm.item.db", "integer", "Per S7ANY item: DB number (0 outside DB/DI).", array=True),
        F("s7comm.item.area", "short", "Per S7ANY item: area code (0x81 I, 0x82 Q, 0x83 M, 0x84 DB, 0x85 DI,"
          " 0x86 L, 0x80 P, 0x1C C, 0x1D T...).", array=True),
        F("s7comm.item.area_name", "keyword", "Per S7ANY item: area name (`inputs`, `outputs`, `flags`,"
          " `data_block`, `counters`, `timers`...).", array=True),
        F("s7comm.item.byte", "long", "Per S7ANY item outside counters/timers: byte address.", array=True),
        F("s7comm.item.bit", "short", "Per S7ANY item outside counters/timers: bit address.", array=True),
        F("s7comm.item.number", "long", "Per counter/timer item: its number.", array=True),
        F("s7comm.data.return_code", "short", "Per data item (read response, write request/response) and of"
          " the userdata data part: 0xFF success, 0x0A object does not exist, 0x05 invalid address, 0x03"
          " access denied, 0x06/0x07 data type not supported/inconsistent, 0x01 hardware error.", array=True),
        F("s7comm.data.transport_size", "short", "Per data item: data transport size (3 BIT, 4 BYTE/WORD/DWORD,"
          " 5 INTEGER, 6 DINTEGER, 7 REAL, 9 OCTET STRING).", array=True),
        F("s7comm.data.length", "integer", "Per data item: length in octets (bit lengths converted); upload and"
          " download-block data: the block bytes carried.", array=True),
        F("s7comm.function_status", "short", "Upload/download: function status (bit 0 more data, bit 1"
          " error)."),
        F("s7comm.upload_id", "long", "Upload: the upload session id the PLC assigns in start upload."),
        F("s7comm.filename", "keyword", "Upload/download file name (`_0A00001P`: complete module, DB 1,"
          " passive) or the blocks a PI service names (`0A00001P`).", array=True),
        F("s7comm.block_type", "keyword", "Block type: OB, FC, FB, DB, SDB, SFC, SFB (CMod), or `unknown-<code>`."),
        F("s7comm.block_number", "integer", "Block number."),
        F("s7comm.filesystem", "keyword", "Destination file system: `passive`, `active`, `active_and_passive`."),
        F("s7comm.block_length", "long", "Start upload ack-data: length of the block to upload."),
        F("s7comm.load_memory_length", "long", "Request download: load memory length of the block."),
        F("s7comm.mc7_length", "long", "Request download: MC7 code length of the block."),
        F("s7comm.pi_service", "keyword", "PLC control / PLC stop: the program invocation service (`_INSE`,"
          " `_DELE`, `P_PROGRAM`, `_MODU`, `_GARB`, `_N_...`)."),
        F("s7comm.pi_argument", "keyword", "PLC control: the parameter block as text (`C ` for a cold start,"
          " `EP` for copy RAM to ROM...)."),
        F("s7comm.pi_block_count", "short", "PLC control `_INSE`/`_DELE`: number of blocks named."),
        F("s7comm.start_type", "keyword", "P_PROGRAM start: `cold` (argument `C`) or `hot`."),
        F("s7comm.userdata.method", "short", "Userdata method octet (0x11 request, 0x12 response)."),
        F("s7comm.userdata.type", "short", "Userdata type: 0 push, 4 request, 8 response."),
        F("s7comm.userdata.type_name", "keyword", "`push`, `request` or `response`."),
        F("s7comm.userdata.group", "short", "Userdata function group: 0 mode transition, 1 programmer commands,"
          " 2 cyclic services, 3 block functions, 4 CPU functions, 5 security, 6 PBC, 7 time functions,"
          " 15 NC programming."),
        F("s7comm.userdata.group_name", "keyword", "Function group name."),
        F("s7comm.userdata.subfunction", "short", "Userdata subfunction (outside mode transition)."),
        F("s7comm.userdata.sequence", "short", "Userdata sequence number (follow-ups of a fragmented answer"
          " repeat it)."),
        F("s7comm.userdata.data_unit_ref", "short", "Userdata data unit reference."),
        F("s7comm.userdata.last_data_unit", "short", "Userdata last-data-unit octet: 0 last, 1 more follow."),
        F("s7comm.userdata.fragments", "short", "Userdata responses joined into this one (the last fragment)."),
        F("s7comm.mode_code", "short", "Mode transition push: the CPU's current mode code."),
        F("s7comm.mode", "keyword", "Mode transition push: `stop`, `warm_restart`, `run`, `hot_restart`,"
          " `hold`, `cold_restart`, `run_r`, `link_up`, `update`."),
        F("s7comm.szl.id", "integer", "Read SZL: SZL id (0x0011 module identification, 0x001C component"
          " identification, 0x0424 mode, 0x00A0 diagnostic buffer...)."),
        F("s7comm.szl.index", "integer", "Read SZL: SZL index."),
        F("s7comm.szl.name", "keyword", "Read SZL: name of the partial list (`module identification`...)."),
        F("s7comm.szl.record_length", "integer", "Read SZL response: octets per record."),
        F("s7comm.szl.record_count", "integer", "Read SZL response: number of records."),
        F("s7comm.identity.order_number", "keyword", "SZL 0x_11: order number (MLFB) of the module, e.g."
          " `6ES7 315-2EH14-0AB0`."),
        F("s7comm.identity.hardware_version", "keyword", "SZL 0x_11: hardware version (module or basic"
          " hardware record)."),
        F("s7comm.identity.firmware_version", "keyword", "SZL 0x_11: firmware version, e.g. `V3.2.7`."),
        F("s7comm.identity.boot_loader_version", "keyword", "SZL 0x_11: boot loader version."),
        F("s7comm.identity.automation_system_name", "keyword", "SZL 0x_1C index 1: name of the automation"
          " system."),
        F("s7comm.identity.module_name", "keyword", "SZL 0x_1C index 2: module name."),
        F("s7comm.identity.plant_id", "keyword", "SZL 0x_1C index 3: plant designation."),
        F("s7comm.identity.copyright", "keyword", "SZL 0x_1C index 4: copyright entry."),
        F("s7comm.identity.serial_number", "keyword", "SZL 0x_1C index 5: serial number of the module."),
        F("s7comm.identity.module_type_name", "keyword", "SZL 0x_1C index 7: module type name."),
        F("s7comm.identity.memory_card_serial", "keyword", "SZL 0x_1C index 8: serial number of the memory"
          " card."),
        F("s7comm.identity.location", "keyword", "SZL 0x_1C index 11: location designation."),
        F("s7comm.cpu_mode", "keyword", "SZL 0x_24: the CPU's mode (`run`, `stop`, `startup_*`, `hold`...)."),
        F("s7comm.cpu_previous_mode", "keyword", "SZL 0x_24: the mode before the last transition."),
        F("s7comm.variable_count", "integer", "Variable status / modify variable: number of variables in the"
          " TIS data."),
        F("s7comm.clock", "keyword", "Read clock response / set clock request: the CPU time as ISO 8601"
          " (the CPU's local time as set)."),
        F("s7comm.diagnostic.event_id", "integer", "Diagnostic message push: event id."),
        F("s7comm.diagnostic.event_class", "keyword", "Diagnostic message push: event class from the id."),
        F("s7comm.diagnostic.time", "keyword", "Diagnostic message push: time stamp (ISO 8601)."),
        F("s7comm.block_counts", "object", "List blocks response: block type -> number of blocks."),
        F("s7comm.blocks_listed", "integer", "List blocks (of type) response: number of blocks listed."),
        F("s7comm.block_numbers", "integer", f"List blocks of type response: block numbers (at most"
          f" {MAX_RECORDS}).", array=True),
        F("s7comm.request_time_ms", "date", "Responses (and unanswered requests): capture time of the paired"
          " request (epoch milliseconds)."),
        F("s7comm.response_time_ms", "double", "Responses: milliseconds since the paired request."),
        F("s7comm.unanswered_pdu_ref", "integer", "`unanswered_request`: PDU reference of the job or userdata"
          " request that saw no answer before the flow ended."),
        F("s7comm.plus.version", "short", "S7comm-plus protocol version: 1, 2, 3, 254 extended keep-alive,"
          " 255 keep-alive."),
        F("s7comm.plus.data_length", "integer", "S7comm-plus header data length."),
        F("s7comm.plus.integrity", "boolean", "S7comm-plus: an integrity part (digest) follows the header (V3)."),
        F("s7comm.plus.digest_length", "short", "S7comm-plus V3: length of the integrity digest."),
        F("s7comm.plus.fragments", "short", "S7comm-plus messages joined into this one (the last carries the"
          " trailer)."),
        F("s7comm.plus.opcode", "short", "S7comm-plus opcode: 0x31 request, 0x32 response, 0x33 notification,"
          " 0x02 response2."),
        F("s7comm.plus.opcode_name", "keyword", "`request`, `response`, `notification`, `response2`."),
        F("s7comm.plus.function_code", "integer", "S7comm-plus function (0x04BB explore, 0x04CA create object,"
          " 0x04D4 delete object, 0x04F2 set variable, 0x0542 set multi variables, 0x054C get multi"
          " variables, 0x056B invoke...)."),
        F("s7comm.plus.function", "keyword", "S7comm-plus function name (`get_multi_variables`...)."),
        F("s7comm.plus.sequence", "integer", "S7comm-plus sequence number (pairs a request with its response)."),
        F("s7comm.plus.session_id", "long", "S7comm-plus session id (requests; copied onto their responses)."),
        F("s7comm.plus.transport_flags", "short", "S7comm-plus transport flags octet."),
        F("s7comm.plus.object_id", "long", "S7comm-plus request: the object addressed (when not zero)."),
        F("s7comm.plus.item_count", "integer", "S7comm-plus set/get (multi) variable request: item count."),
        F("s7comm.plus.return_value", "long", "S7comm-plus response: the return value."),
        F("s7comm.plus.error_code", "integer", "S7comm-plus response: error code (low 16 bits of the return"
          " value, signed; negative is an error)."),
        F("s7comm.plus.subscription_id", "long", "S7comm-plus notification: subscription object id."),
        F("s7comm.plus.keep_alive_sequence", "short", "S7comm-plus keep-alive: sequence number."),
        F("s7comm.plus.confirmed_bytes", "long", "S7comm-plus extended keep-alive: octets confirmed."),
        F("s7comm.plus.message", "keyword", "S7comm-plus extended keep-alive: text (e.g. `LOGOUT`)."),
        F("s7comm.anomaly", "keyword", "Why the message breaks the protocol although it parses (every reason"
          " found): framing (junk-before-tpkt, tpkt-too-short, cotp-length-invalid, cotp-unknown-type,"
          " cotp-reassembly-overflow, unknown-protocol-id), S7comm (s7-header-truncated, s7-length-mismatch,"
          " unknown-rosctr, unknown-function, job-without-parameters, pdu-exceeds-negotiated-size,"
          " setup-truncated, setup-invalid, item-truncated, item-spec-invalid, item-count-mismatch,"
          " unknown-area, unknown-transport-size, data-item-truncated, write-length-mismatch,"
          " response-item-count-mismatch, response-function-mismatch, parameters-truncated,"
          " filename-truncated, pi-service-truncated, userdata-parameters-truncated,"
          " userdata-reassembly-overflow, szl-truncated, invalid-clock) and S7comm-plus (plus-truncated,"
          " plus-unknown-version, plus-unknown-opcode, plus-unknown-function, plus-trailer-mismatch,"
          " plus-reassembly-overflow).", array=True),
    )


DISSECTOR = Dissector(
    name="s7comm",
    description="Siemens S7comm and S7comm-plus over ISO-on-TCP (TPKT/COTP). Job functions by name;"
    " `plc_control/<service>` rows give the operation of each PI service; userdata by subfunction;"
    " `read_szl/identity` is a read of an identification list (SZL 0x_11, 0x_1C); S7comm-plus functions by"
    " name.",
    tcp_ports=frozenset({102}),
    udp_ports=frozenset(),
    probe=probe,
    new_session=S7commSession,
    fields=_fields(),
    operations=OPERATIONS,
    routine_actions=frozenset({"keep_alive", "extended_keep_alive"}),
    wireshark=WiresharkFields(
        display_filter="s7comm",
        fields={
            "s7comm.rosctr": "s7comm.header.rosctr",
            "s7comm.pdu_ref": "s7comm.header.pduref",
            "s7comm.param_length": "s7comm.header.parlg",
            "s7comm.data_length": "s7comm.header.datlg",
            "s7comm.error_class": "s7comm.header.errcls",
            "s7comm.error_code": "s7comm.header.errcod",
            "s7comm.error": "s7comm.param.errcod",
            "s7comm.function_code": "s7comm.param.func",
            "s7comm.setup.pdu_size": "s7comm.param.pdu_length",
            "s7comm.setup.max_amq_calling": "s7comm.param.maxamq_calling",
            "s7comm.item_count": "s7comm.param.itemcount",
            "s7comm.item.syntax_id": "s7comm.param.item.syntaxid",
            "s7comm.item.transport_size": "s7comm.param.item.transp_size",
            "s7comm.item.length": "s7comm.param.item.length",
            "s7comm.item.db": "s7comm.param.item.db",
            "s7comm.item.area": "s7comm.param.item.area",
            "s7comm.item.byte": "s7comm.param.item.address.byte",
            "s7comm.item.bit": "s7comm.param.item.address.bit",
            "s7comm.item.number": "s7comm.param.item.address.number",
            "s7comm.data.return_code": "s7comm.data.returncode",
            "s7comm.data.transport_size": "s7comm.data.transportsize",
            "s7comm.data.length": "s7comm.data.length",
            "s7comm.userdata.type": "s7comm.param.userdata.type",
            "s7comm.userdata.group": "s7comm.param.userdata.funcgroup",
            "s7comm.userdata.subfunction": "s7comm.param.userdata.subfunc",
            "s7comm.userdata.sequence": "s7comm.param.userdata.seq_num",
            "s7comm.userdata.last_data_unit": "s7comm.param.userdata.lastdataunit",
            "s7comm.mode_code": "s7comm.param.modetrans.subfunc",
            "s7comm.szl.id": "s7comm.data.userdata.szl_id",
            "s7comm.szl.index": "s7comm.data.userdata.szl_index",
            "s7comm.pi_service@request": "s7comm.param.pistart.servicename",
            "s7comm.filename@request": "s7comm.param.blockcontrol.filename",
            "s7comm.upload_id": "s7comm.data.blockcontrol.uploadid",
            "s7comm.function_status": "s7comm.param.blockcontrol.functionstatus",
            "s7comm.block_length": "s7comm.param.blockcontrol.upl_lenstring",
        },
        decode_as="tpkt",
    ),
)
