"""BACnet/IP (ASHRAE 135 Annex J, UDP port 47808 = 0xBAC0): one event per datagram.

A datagram is one BACnet Virtual Link Control (BVLC) message: type 0x81
(BACnet/IPv4; 0x82 is BACnet/IPv6, Annex U), function, and a big-endian length
that should equal the datagram's (the datagram bounds the message; a length that
disagrees is an anomaly, as Wireshark also decodes such messages whole). BVLC
management functions (result, broadcast and foreign device tables, foreign
device registration) end there; the others carry an NPDU (Original-Unicast/
Broadcast-NPDU, Distribute-Broadcast-To-Network, and Forwarded-NPDU, which first
names the B/IP address of the original source).

The NPDU (clause 6) holds version 1, a control octet (network-layer message,
DNET/DLEN/DADR present, SNET/SLEN/SADR present, expecting reply, priority), the
optional destination and source network addresses, a hop count with the
destination, then either a network-layer message (routing: Who-Is-Router...,
with its own small bodies) or an APDU (clause 20): confirmed and unconfirmed
requests, simple/complex/segment acknowledgements, error, reject and abort.

Service parameters are ASN.1 encoded with BACnet tags (application tags carry
their own type; context tags only mean something in their service's grammar).
:func:`_tokenize` turns the parameters into flat tag tokens once; a
per-service *grammar* (:data:`_CONFIRMED`, :data:`_UNCONFIRMED`,
:data:`_ACKS`, :data:`_ERRORS`) maps a context tag, by its position in the
nesting of opening tags, to what it means -- object identifier, property,
array index, a named field, a region of application-tagged values, an error,
a password (noted as present, never decoded). Everything not named in a
grammar is still walked: application-tagged values anywhere become
``bacnet.values``/``ics.values``, and every object identifier met is listed.
ReadProperty requests and single-value acks -- most of a BACnet network's
traffic -- take a fast path (:func:`_fast_read_property`) that writes exactly
what the walk would (a test holds them equal).

Three outcomes per datagram, nothing else:

* a normal event;
* an *anomaly* event (``event.type: ["protocol", "error"]``, the list
  ``bacnet.anomaly``): the datagram frames as BVLC but something in it breaks
  the specification (length mismatch, truncated NPDU or APDU, malformed tags,
  reserved bits, a confirmed request sent as a broadcast...). Fields parsed
  before the problem are kept;
* :class:`~sensor.dissect.ProtocolViolation` when the datagram is not BVLC at
  all (type byte neither 0x81 nor 0x82, or a length field below 4).

Confirmed requests are paired with their answer (simple/complex ack, error,
reject, abort) per flow by invoke id, direction and the BACnet network
addresses of both ends (a router fronts many devices on one UDP flow) -- at
most :data:`MAX_OUTSTANDING` for :data:`PAIR_TIMEOUT` seconds. Segmented
requests and complex acks are reassembled per transaction (in-order segments,
at most :data:`MAX_SEGMENTED_BYTES`); every segment is an event, the last one
carries the decoded service.
"""

from __future__ import annotations

import ipaddress
import math
import struct
from typing import Any

from sensor.dissect import Dissector, Event, ProtocolViolation, WiresharkFields
from sensor.schema import Field

__all__ = ["DISSECTOR", "BacnetSession", "probe", "MAX_OUTSTANDING", "PAIR_TIMEOUT", "MAX_ITEMS", "MAX_IDS",
           "MAX_TEXT", "MAX_SEGMENTED_BYTES", "MAX_ASSEMBLIES", "OBJECT_TYPES", "PROPERTIES", "ERROR_CODES",
           "CONFIRMED_SERVICES", "UNCONFIRMED_SERVICES", "VENDORS", "object_type_name", "property_name"]

PORT = 47808
MAX_OUTSTANDING = 1000
"""Confirmed requests awaiting an answer per flow; beyond it the oldest is forgotten (counted)."""
PAIR_TIMEOUT = 60.0
"""Seconds after which an unanswered request, or an unfinished segmented message, is forgotten."""
MAX_ITEMS = 64
"""Values, tags and table entries recorded per event; the rest are counted in ``bacnet.truncated``."""
MAX_IDS = 1024
"""Object identifiers and property identifiers recorded per event (an object-list can be long)."""
MAX_TEXT = 256
"""Characters kept of one string value (octet strings: bytes shown in hex)."""
MAX_SEGMENTED_BYTES = 256 << 10
"""Service data one segmented message may reassemble to; beyond it the message is reported, not decoded."""
MAX_ASSEMBLIES = 32
"""Segmented messages reassembled at once per flow."""
MAX_TOKENS = 65536
"""Tags decoded per message (a reassembled message of MAX_SEGMENTED_BYTES holds at most this many)."""

_ERROR_TYPE = ("protocol", "error")

# -- names (ASHRAE 135-2020 enumerations) ------------------------------------------------------------


def _numbered(text: str) -> dict[int, str]:
    """``"0 name 1 other-name ..."`` -> {0: "name", 1: "other-name"}: compact tables of hyphenated names."""
    words = text.split()
    return {int(words[i]): words[i + 1] for i in range(0, len(words), 2)}


def _dense(names: dict[int, str], size: int, unknown: str = "unknown-{}") -> tuple[str, ...]:
    return tuple(names.get(i) or unknown.format(i) for i in range(size))


_BVLC4 = {
    0x00: "bvlc_result", 0x01: "write_broadcast_distribution_table", 0x02: "read_broadcast_distribution_table",
    0x03: "read_broadcast_distribution_table_ack", 0x04: "forwarded_npdu", 0x05: "register_foreign_device",
    0x06: "read_foreign_device_table", 0x07: "read_foreign_device_table_ack",
    0x08: "delete_foreign_device_table_entry", 0x09: "distribute_broadcast_to_network",
    0x0A: "original_unicast_npdu", 0x0B: "original_broadcast_npdu", 0x0C: "secure_bvll",
}
_BVLC6 = {
    0x00: "bvlc_result", 0x01: "original_unicast_npdu", 0x02: "original_broadcast_npdu",
    0x03: "address_resolution", 0x04: "forwarded_address_resolution", 0x05: "address_resolution_ack",
    0x06: "virtual_address_resolution", 0x07: "virtual_address_resolution_ack", 0x08: "forwarded_npdu",
    0x09: "register_foreign_device", 0x0A: "delete_foreign_device_table_entry", 0x0B: "secure_bvll",
    0x0C: "distribute_broadcast_to_network",
}
_BVLC4_NAMES = _dense(_BVLC4, 256)
_BVLC6_NAMES = _dense(_BVLC6, 256)
# Offset of the NPDU in the BVLC message (0: the function carries none).
_NPDU_AT4 = tuple({0x04: 10, 0x09: 4, 0x0A: 4, 0x0B: 4}.get(f, 0) for f in range(256))
_NPDU_AT6 = tuple({0x01: 10, 0x02: 7, 0x08: 25, 0x0C: 7}.get(f, 0) for f in range(256))
# NPDU carriers that deliver to every device of a network (Original-Broadcast, Forwarded, Distribute).
_BROADCASTS4 = frozenset({0x04, 0x09, 0x0B})
_BROADCASTS6 = frozenset({0x02, 0x08, 0x0C})
# Exact BVLC length of functions without variable parts.
_FIXED4 = {0x00: 6, 0x02: 4, 0x05: 6, 0x06: 4, 0x08: 10}
_FIXED6 = {0x00: 9, 0x03: 10, 0x04: 28, 0x05: 10, 0x06: 7, 0x07: 10, 0x09: 9, 0x0A: 25}

_BVLC4_RESULTS = {
    0x0000: "successful_completion", 0x0010: "write_broadcast_distribution_table_nak",
    0x0020: "read_broadcast_distribution_table_nak", 0x0030: "register_foreign_device_nak",
    0x0040: "read_foreign_device_table_nak", 0x0050: "delete_foreign_device_table_entry_nak",
    0x0060: "distribute_broadcast_to_network_nak",
}
_BVLC6_RESULTS = {
    0x0000: "successful_completion", 0x0030: "address_resolution_nak",
    0x0060: "virtual_address_resolution_nak", 0x0090: "register_foreign_device_nak",
    0x00A0: "delete_foreign_device_table_entry_nak", 0x00C0: "distribute_broadcast_to_network_nak",
}

_NETWORK_MESSAGES = {
    0x00: "who_is_router_to_network", 0x01: "i_am_router_to_network", 0x02: "i_could_be_router_to_network",
    0x03: "reject_message_to_network", 0x04: "router_busy_to_network", 0x05: "router_available_to_network",
    0x06: "initialize_routing_table", 0x07: "initialize_routing_table_ack",
    0x08: "establish_connection_to_network", 0x09: "disconnect_connection_to_network",
    0x0A: "challenge_request", 0x0B: "security_payload", 0x0C: "security_response", 0x0D: "request_key_update",
    0x0E: "update_key_set", 0x0F: "update_distribution_key", 0x10: "request_master_key",
    0x11: "set_master_key", 0x12: "what_is_network_number", 0x13: "network_number_is",
}
_NETWORK_NAMES = tuple(_NETWORK_MESSAGES.get(t) or (f"proprietary-{t}" if t >= 0x80 else f"unknown-{t}")
                       for t in range(256))
_NETWORK_REJECTS = _dense({0: "other", 1: "not-directly-connected", 2: "router-busy",
                           3: "unknown-network-message-type", 4: "message-too-long", 5: "security-error",
                           6: "addressing-error"}, 256)
_PRIORITIES = ("normal", "urgent", "critical_equipment", "life_safety")

_APDU_TYPES = ("confirmed_request", "unconfirmed_request", "simple_ack", "complex_ack", "segment_ack",
               "error", "reject", "abort", *(f"unknown-{t}" for t in range(8, 16)))
_MAX_APDU = (50, 128, 206, 480, 1024, 1476)
_MAX_SEGMENTS = (0, 2, 4, 8, 16, 32, 64, 65)  # 0: unspecified, 65: more than 64

CONFIRMED_SERVICES: dict[int, str] = {
    0: "acknowledge_alarm", 1: "confirmed_cov_notification", 2: "confirmed_event_notification",
    3: "get_alarm_summary", 4: "get_enrollment_summary", 5: "subscribe_cov", 6: "atomic_read_file",
    7: "atomic_write_file", 8: "add_list_element", 9: "remove_list_element", 10: "create_object",
    11: "delete_object", 12: "read_property", 13: "read_property_conditional", 14: "read_property_multiple",
    15: "write_property", 16: "write_property_multiple", 17: "device_communication_control",
    18: "confirmed_private_transfer", 19: "confirmed_text_message", 20: "reinitialize_device", 21: "vt_open",
    22: "vt_close", 23: "vt_data", 24: "authenticate", 25: "request_key", 26: "read_range",
    27: "life_safety_operation", 28: "subscribe_cov_property", 29: "get_event_information",
    30: "subscribe_cov_property_multiple", 31: "confirmed_cov_notification_multiple",
    32: "confirmed_audit_notification", 33: "audit_log_query",
}
UNCONFIRMED_SERVICES: dict[int, str] = {
    0: "i_am", 1: "i_have", 2: "unconfirmed_cov_notification", 3: "unconfirmed_event_notification",
    4: "unconfirmed_private_transfer", 5: "unconfirmed_text_message", 6: "time_synchronization", 7: "who_has",
    8: "who_is", 9: "utc_time_synchronization", 10: "write_group", 11: "unconfirmed_cov_notification_multiple",
    12: "unconfirmed_audit_notification", 13: "who_am_i", 14: "you_are",
}
_CONFIRMED_NAMES = _dense(CONFIRMED_SERVICES, 256)
_UNCONFIRMED_NAMES = _dense(UNCONFIRMED_SERVICES, 256)

OBJECT_TYPES: dict[int, str] = _numbered("""
    0 analog-input 1 analog-output 2 analog-value 3 binary-input 4 binary-output 5 binary-value
    6 calendar 7 command 8 device 9 event-enrollment 10 file 11 group 12 loop 13 multi-state-input
    14 multi-state-output 15 notification-class 16 program 17 schedule 18 averaging 19 multi-state-value
    20 trend-log 21 life-safety-point 22 life-safety-zone 23 accumulator 24 pulse-converter 25 event-log
    26 global-group 27 trend-log-multiple 28 load-control 29 structured-view 30 access-door 31 timer
    32 access-credential 33 access-point 34 access-rights 35 access-user 36 access-zone
    37 credential-data-input 38 network-security 39 bitstring-value 40 characterstring-value
    41 date-pattern-value 42 date-value 43 datetime-pattern-value 44 datetime-value 45 integer-value
    46 large-analog-value 47 octetstring-value 48 positive-integer-value 49 time-pattern-value 50 time-value
    51 notification-forwarder 52 alert-enrollment 53 channel 54 lighting-output 55 binary-lighting-output
    56 network-port 57 elevator-group 58 escalator 59 lift 60 staging 61 audit-log 62 audit-reporter
    63 color 64 color-temperature
""")
_OBJECT_NAMES = tuple(OBJECT_TYPES.get(t) or (f"proprietary-{t}" if t >= 128 else f"unknown-{t}")
                      for t in range(1024))

PROPERTIES: dict[int, str] = _numbered("""
    0 acked-transition 1 ack-required 2 action 3 action-text 4 active-text 5 active-vt-session 6 alarm-value
    7 alarm-values 8 all 9 all-writes-successful 10 apdu-segment-timeout 11 apdu-timeout
    12 application-software-version 13 archive 14 bias 15 change-of-state-count 16 change-of-state-time
    17 notification-class 19 controlled-variable-reference 20 controlled-variable-units
    21 controlled-variable-value 22 cov-increment 23 datelist 24 daylights-savings-status 25 deadband
    26 derivative-constant 27 derivative-constant-units 28 description 29 description-of-halt
    30 device-address-binding 31 device-type 32 effective-period 33 elapsed-active-time 34 error-limit
    35 event-enable 36 event-state 37 event-type 38 exception-schedule 39 fault-values 40 feedback-value
    41 file-access-method 42 file-size 43 file-type 44 firmware-revision 45 high-limit 46 inactive-text
    47 in-process 48 instance-of 49 integral-constant 50 integral-constant-units
    51 issue-confirmed-notifications 52 limit-enable 53 list-of-group-members
    54 list-of-object-property-references 55 list-of-session-keys 56 local-date 57 local-time 58 location
    59 low-limit 60 manipulated-variable-reference 61 maximum-output 62 max-apdu-length-accepted
    63 max-info-frames 64 max-master 65 max-pres-value 66 minimum-off-time 67 minimum-on-time
    68 minimum-output 69 min-pres-value 70 model-name 71 modification-date 72 notify-type
    73 number-of-APDU-retries 74 number-of-states 75 object-identifier 76 object-list 77 object-name
    78 object-property-reference 79 object-type 80 optional 81 out-of-service 82 output-units
    83 event-parameters 84 polarity 85 present-value 86 priority 87 priority-array 88 priority-for-writing
    89 process-identifier 90 program-change 91 program-location 92 program-state 93 proportional-constant
    94 proportional-constant-units 95 protocol-conformance-class 96 protocol-object-types-supported
    97 protocol-services-supported 98 protocol-version 99 read-only 100 reason-for-halt 101 recipient
    102 recipient-list 103 reliability 104 relinquish-default 105 required 106 resolution
    107 segmentation-supported 108 setpoint 109 setpoint-reference 110 state-text 111 status-flags
    112 system-status 113 time-delay 114 time-of-active-time-reset 115 time-of-state-count-reset
    116 time-synchronization-recipients 117 units 118 update-interval 119 utc-offset 120 vendor-identifier
    121 vendor-name 122 vt-class-supported 123 weekly-schedule 124 attempted-samples 125 average-value
    126 buffer-size 127 client-cov-increment 128 cov-resubscription-interval 129 current-notify-time
    130 event-time-stamp 131 log-buffer 132 log-device-object-property 133 enable 134 log-interval
    135 maximum-value 136 minimum-value 137 notification-threshold 138 previous-notify-time
    139 protocol-revision 140 records-since-notification 141 record-count 142 start-time 143 stop-time
    144 stop-when-full 145 total-record-count 146 valid-samples 147 window-interval 148 window-samples
    149 maximum-value-time-stamp 150 minimum-value-time-stamp 151 variance-value
    152 active-cov-subscriptions 153 backup-failure-timeout 154 configuration-files 155 database-revision
    156 direct-reading 157 last-restore-time 158 maintenance-required 159 member-of 160 mode
    161 operation-expected 162 setting 163 silenced 164 tracking-value 165 zone-members
    166 life-safety-alarm-values 167 max-segments-accepted 168 profile-name 169 auto-slave-discovery
    170 manual-slave-address-binding 171 slave-address-binding 172 slave-proxy-enable 173 last-notify-record
    174 schedule-default 175 accepted-modes 176 adjust-value 177 count 178 count-before-change
    179 count-change-time 180 cov-period 181 input-reference 182 limit-monitoring-interval
    183 logging-object 184 logging-record 185 prescale 186 pulse-rate 187 scale 188 scale-factor
    189 update-time 190 value-before-change 191 value-set 192 value-change-time 193 align-intervals
    195 interval-offset 196 last-restart-reason 197 logging-type 202 restart-notification-recipients
    203 time-of-device-restart 204 time-synchronization-interval 205 trigger
    206 UTC-time-synchronization-recipients 207 node-subtype 208 node-type 209 structured-object-list
    210 subordinate-annotations 211 subordinate-list 212 actual-shed-level 213 duty-window
    214 expected-shed-level 215 full-duty-baseline 218 requested-shed-level 219 shed-duration
    220 shed-level-descriptions 221 shed-levels 222 state-description 226 door-alarm-state
    227 door-extended-pulse-time 228 door-members 229 door-open-too-long-time 230 door-pulse-time
    231 door-status 232 door-unlock-delay-time 233 lock-status 234 masked-alarm-values 235 secured-status
    244 absentee-limit 245 access-alarm-events 246 access-doors 247 access-event
    248 access-event-authentication-factor 249 access-event-credential 250 access-event-time
    251 access-transaction-events 252 accompaniment 253 accompaniment-time 254 activation-time
    255 active-authentication-policy 256 assigned-access-rights 257 authentication-factors
    258 authentication-policy-list 259 authentication-policy-names 260 authentication-status
    261 authorization-mode 262 belongs-to 263 credential-disable 264 credential-status 265 credentials
    266 credentials-in-zone 267 days-remaining 268 entry-points 269 exit-points 270 expiration-time
    271 extended-time-enable 272 failed-attempt-events 273 failed-attempts 274 failed-attempts-time
    275 last-access-event 276 last-access-point 277 last-credential-added 278 last-credential-added-time
    279 last-credential-removed 280 last-credential-removed-time 281 last-use-time 282 lockout
    283 lockout-relinquish-time 284 master-exemption 285 max-failed-attempts 286 members 287 muster-point
    288 negative-access-rules 289 number-of-authentication-policies 290 occupancy-count
    291 occupancy-count-adjust 292 occupancy-count-enable 293 occupancy-exemption 294 occupancy-lower-limit
    295 occupancy-lower-limit-enforced 296 occupancy-state 297 occupancy-upper-limit
    298 occupancy-upper-limit-enforced 299 passback-exemption 300 passback-mode 301 passback-timeout
    302 positive-access-rules 303 reason-for-disable 304 supported-formats 305 supported-format-classes
    306 threat-authority 307 threat-level 308 trace-flag 309 transaction-notification-class
    310 user-external-identifier 311 user-information-reference 317 user-name 318 user-type
    319 uses-remaining 320 zone-from 321 zone-to 322 access-event-tag 323 global-identifier
    326 verification-time 327 base-device-security-policy 328 distribution-key-revision 329 do-not-hide
    330 key-sets 331 last-key-server 332 network-access-security-policies 333 packet-reorder-time
    334 security-pdu-timeout 335 security-time-window 336 supported-security-algorithms
    337 update-key-set-timeout 338 backup-and-restore-state 339 backup-preparation-time
    340 restore-completion-time 341 restore-preparation-time 342 bit-mask 343 bit-text 344 is-utc
    345 group-members 346 group-member-names 347 member-status-flags 348 requested-update-interval
    349 covu-period 350 covu-recipients 351 event-message-texts 352 event-message-texts-config
    353 event-detection-enable 354 event-algorithm-inhibit 355 event-algorithm-inhibit-ref
    356 time-delay-normal 357 reliability-evaluation-inhibit 358 fault-parameters 359 fault-type
    360 local-forwarding-only 361 process-identifier-filter 362 subscribed-recipients 363 port-filter
    364 authorization-exemptions 365 allow-group-delay-inhibit 366 channel-number 367 control-groups
    368 execution-delay 369 last-priority 370 write-status 371 property-list 372 serial-number
    373 blink-warn-enable 374 default-fade-time 375 default-ramp-rate 376 default-step-increment
    377 egress-time 378 in-progress 379 instantaneous-power 380 lighting-command
    381 lighting-command-default-priority 382 max-actual-value 383 min-actual-value 384 power 385 transition
    386 egress-active 387 interface-value 388 fault-high-limit 389 fault-low-limit 390 low-diff-limit
    391 strike-count 392 time-of-strike-count-reset 393 default-timeout 394 initial-timeout
    395 last-state-change 396 state-change-values 397 timer-running 398 timer-state 399 apdu-length
    400 bacnet-ip-address 401 bacnet-ip-default-gateway 402 bacnet-ip-dhcp-enable
    403 bacnet-ip-dhcp-lease-time 404 bacnet-ip-dhcp-lease-time-remaining 405 bacnet-ip-dhcp-server
    406 bacnet-ip-dns-server 407 bacnet-ip-global-address 408 bacnet-ip-mode 409 bacnet-ip-multicast-address
    410 bacnet-ip-nat-traversal 411 bacnet-ip-subnet-mask 412 bacnet-ip-udp-port
    413 bbmd-accept-fd-registrations 414 bbmd-broadcast-distribution-table 415 bbmd-foreign-device-table
    416 changes-pending 417 command 418 fd-bbmd-address 419 fd-subscription-lifetime 420 link-speed
    421 link-speeds 422 link-speed-autonegotiate 423 mac-address 424 network-interface-name
    425 network-number 426 network-number-quality 427 network-type 428 routing-table
    429 virtual-mac-address-table 430 command-time-array 431 current-command-priority 432 last-command-time
    433 value-source 434 value-source-array 435 bacnet-ipv6-mode 436 ipv6-address 437 ipv6-prefix-length
    438 bacnet-ipv6-udp-port 439 ipv6-default-gateway 440 bacnet-ipv6-multicast-address 441 ipv6-dns-server
    442 ipv6-auto-addressing-enable 443 ipv6-dhcp-lease-time 444 ipv6-dhcp-lease-time-remaining
    445 ipv6-dhcp-server 446 ipv6-zone-index 447 assigned-landing-calls 448 car-assigned-direction
    449 car-door-command 450 car-door-status 451 car-door-text 452 car-door-zone 453 car-drive-status
    454 car-load 455 car-load-units 456 car-mode 457 car-moving-direction 458 car-position
    459 elevator-group 460 energy-meter 461 energy-meter-ref 462 escalator-mode 463 fault-signals
    464 floor-text 465 group-id 467 group-mode 468 higher-deck 469 installation-id 470 landing-calls
    471 landing-call-control 472 landing-door-status 473 lower-deck 474 machine-room-id 475 making-car-call
    476 next-stopping-floor 477 operation-direction 478 passenger-alarm 479 power-mode
    480 registered-car-call 481 active-cov-multiple-subscriptions 482 protocol-level 483 reference-port
    484 deployed-profile-location 485 profile-location 486 tags 487 subordinate-node-types
    488 subordinate-tags 489 subordinate-relationship 490 default-subordinate-relationship 491 represents
    492 default-present-value 493 present-stage 494 stages 495 stage-names 496 target-references
    497 audit-source-reporter 498 audit-level 499 audit-notification-recipient 500 audit-priority-filter
    501 auditable-operations 502 delete-on-forward 503 maximum-send-delay 504 monitored-objects 505 send-now
    506 floor-number 507 device-uuid 508 additional-reference-ports 509 certificate-signing-request-file
    510 command-validation-result 511 issuer-certificate-files 4194304 max-bvlc-length-accepted
    4194305 max-npdu-length-accepted 4194306 operational-certificate-file 4194307 current-health
    4194308 sc-connect-wait-timeout 4194309 sc-direct-connect-accept-enable
    4194310 sc-direct-connect-accept-uris 4194311 ssc-direct-connect-binding
    4194312 sc-direct-connect-connection-status 4194313 sc-direct-connect-initiate-enable
    4194314 sc-disconnect-wait-timeout 4194315 sc-failed-connection-request
    4194316 sc-failover-hub-connection-status 4194317 sc-failover-hub-uri 4194318 sc-hub-connector-state
    4194319 sc-hub-function-accept-uris 4194320 sc-hub-function-binding
    4194321 sc-hub-function-connection-status 4194322 sc-hub-function-enable 4194323 sc-heartbeat-timeout
    4194324 sc-primary-hub-connection-status 4194325 sc-primary-hub-uri 4194326 sc-maximum-reconnect-time
    4194327 sc-minimum-reconnect-time 4194328 color-override 4194329 color-reference 4194330 default-color
    4194331 default-color-temperature 4194332 override-color-reference 4194334 color-command
    4194335 high-end-trim 4194336 low-end-trim 4194337 trim-fade-time
""")

ERROR_CODES: dict[int, str] = _numbered("""
    0 other 1 authentication-failed 2 configuration-in-progress 3 device-busy
    4 dynamic-creation-not-supported 5 file-access-denied 6 incompatible-security-levels
    7 inconsistent-parameters 8 inconsistent-selection-criterion 9 invalid-data-type
    10 invalid-file-access-method 11 invalid-file-start-position 12 invalid-operator-name
    13 invalid-parameter-data-type 14 invalid-time-stamp 15 key-generation-error
    16 missing-required-parameter 17 no-objects-of-specified-type 18 no-space-for-object
    19 no-space-to-add-list-element 20 no-space-to-write-property 21 no-vt-sessions-available
    22 property-is-not-a-list 23 object-deletion-not-permitted 24 object-identifier-already-exists
    25 operational-problem 26 password-failure 27 read-access-denied 28 security-not-supported
    29 service-request-denied 30 timeout 31 unknown-object 32 unknown-property 34 unknown-vt-class
    35 unknown-vt-session 36 unsupported-object-type 37 value-out-of-range 38 vt-session-already-closed
    39 vt-session-termination-failure 40 write-access-denied 41 character-set-not-supported
    42 invalid-array-index 43 cov-subscription-failed 44 not-cov-property
    45 optional-functionality-not-supported 46 invalid-configuration-data 47 datatype-not-supported
    48 duplicate-name 49 duplicate-object-id 50 property-is-not-an-array 51 abort-buffer-overflow
    52 abort-invalid-apdu-in-this-state 53 abort-preempted-by-higher-priority-task
    54 abort-segmentation-not-supported 55 abort-proprietary 56 abort-other 57 invalid-tag 58 network-down
    59 reject-buffer-overflow 60 reject-inconsistent-parameters 61 reject-invalid-parameter-data-type
    62 reject-invalid-tag 63 reject-missing-required-parameter 64 reject-parameter-out-of-range
    65 reject-too-many-arguments 66 reject-undefined-enumeration 67 reject-unrecognized-service
    68 reject-proprietary 69 reject-other 70 unknown-device 71 unknown-route 72 value-not-initialized
    73 invalid-event-state 74 no-alarm-configured 75 log-buffer-full 76 logged-value-purged
    77 no-property-specified 78 not-configured-for-triggered-logging 79 unknown-subscription
    80 parameter-out-of-range 81 list-element-not-found 82 busy 83 communication-disabled 84 success
    85 access-denied 86 bad-destination-address 87 bad-destination-device-id 88 bad-signature
    89 bad-source-address 90 bad-timestamp 91 cannot-use-key 92 cannot-verify-message-id
    93 correct-key-revision 94 destination-device-id-required 95 duplicate-message
    96 encryption-not-configured 97 encryption-required 98 incorrect-key 99 invalid-key-data
    100 key-update-in-progress 101 malformed-message 102 not-key-server 103 security-not-configured
    104 source-security-required 105 too-many-keys 106 unknown-authentication-type 107 unknown-key
    108 unknown-key-revision 109 unknown-source-message 110 not-router-to-dnet 111 router-busy
    112 unknown-network-message 113 message-too-long 114 security-error 115 addressing-error
    116 write-bdt-failed 117 read-bdt-failed 118 register-foreign-device-failed 119 read-fdt-failed
    120 delete-fdt-entry-failed 121 distribute-broadcast-failed 122 unknown-file-size
    123 abort-apdu-too-long 124 abort-application-exceeded-reply-time 125 abort-out-of-resources
    126 abort-tsm-timeout 127 abort-window-size-out-of-range 128 file-full 129 inconsistent-configuration
    130 inconsistent-object-type 131 internal-error 132 not-configured 133 out-of-memory 134 value-too-long
    135 abort-insufficient-security 136 abort-security-error 137 duplicate-entry
    138 invalid-value-in-this-state 139 invalid-operation-in-this-state 140 list-item-not-numbered
    141 list-item-not-timestamped 142 invalid-data-encoding 143 bvlc-function-unknown
    144 bvlc-proprietary-function-unknown 145 header-encoding-error 146 header-not-understood
    147 message-incomplete 148 not-a-bacnet-sc-hub 149 payload-expected 150 unexpected-data
    151 node-duplicate-vmac 152 http-unexpected-response-code 153 http-no-upgrade
    154 http-resource-not-local 155 http-proxy-authentication-failed 156 http-response-timeout
    157 http-response-syntax-error 158 http-response-value-error 159 http-response-missing-header
    160 http-websocket-header-error 161 http-upgrade-required 162 http-upgrade-error
    163 http-temporary-unavailable 164 http-not-a-server 165 http-error 166 websocket-scheme-not-supported
    167 websocket-unknown-control-message 168 websocket-close-error 169 websocket-closed-by-peer
    170 websocket-endpoint-leaves 171 websocket-protocol-error 172 websocket-data-not-accepted
    173 websocket-closed-abnormally 174 websocket-data-inconsistent 175 websocket-data-against-policy
    176 websocket-frame-too-long 177 websocket-extension-missing 178 websocket-request-unavailable
    179 websocket-error 180 tls-client-certificate-error 181 tls-server-certificate-error
    182 tls-client-authentication-failed 183 tls-server-authentication-failed
    184 tls-client-certificate-expired 185 tls-server-certificate-expired 186 tls-client-certificate-revoked
    187 tls-server-certificate-revoked 188 tls-error 189 dns-unavailable 190 dns-name-resolution-failed
    191 dns-resolver-failure 192 dns-error 193 tcp-connect-timeout 194 tcp-connection-refused
    195 tcp-closed-by-local 196 tcp-closed-other 197 tcp-error 198 ip-address-not-reachable 199 ip-error
""")
_ERROR_CODE_NAMES = _dense(ERROR_CODES, 256)
_ERROR_CLASSES = _dense({0: "device", 1: "object", 2: "property", 3: "resources", 4: "security",
                         5: "services", 6: "vt", 7: "communication"}, 256)
_REJECT_REASONS = _dense({0: "other", 1: "buffer-overflow", 2: "inconsistent-parameters",
                          3: "invalid-parameter-data-type", 4: "invalid-tag", 5: "missing-required-parameter",
                          6: "parameter-out-of-range", 7: "too-many-arguments", 8: "undefined-enumeration",
                          9: "unrecognized-service"}, 256, "proprietary-{}")
_ABORT_REASONS = _dense({0: "other", 1: "buffer-overflow", 2: "invalid-apdu-in-this-state",
                         3: "preempted-by-higher-priority-task", 4: "segmentation-not-supported",
                         5: "security-error", 6: "insufficient-security", 7: "window-size-out-of-range",
                         8: "application-exceeded-reply-time", 9: "out-of-resources", 10: "tsm-timeout",
                         11: "apdu-too-long"}, 256, "proprietary-{}")

VENDORS: dict[int, str] = {
    0: "ASHRAE", 1: "NIST", 2: "The Trane Company", 3: "Daikin Applied Americas", 4: "PolarSoft",
    5: "Johnson Controls, Inc.", 6: "ABB (Formerly American Auto-Matrix)",
    7: "Siemens Schweiz AG (Formerly: Landis & Staefa Division Europe)", 8: "Delta Controls",
    9: "Siemens Schweiz AG", 10: "Schneider Electric", 11: "TAC", 12: "Orion Analysis Corporation",
    13: "Teletrol Systems Inc.", 14: "Cimetrics Technology", 15: "Cornell University",
    16: "United Technologies Carrier", 17: "Honeywell Inc.", 18: "Alerton / Honeywell", 19: "TAC AB",
    20: "Hewlett-Packard Company", 21: "Dorsette's Inc.", 22: "Siemens Schweiz AG (Formerly: Cerberus AG)",
    23: "York Controls Group", 24: "Automated Logic Corporation", 25: "CSI Control Systems International",
    26: "Phoenix Controls Corporation", 27: "Innovex Technologies, Inc.", 28: "KMC Controls, Inc.",
    29: "Xn Technologies, Inc.", 30: "Hyundai Information Technology Co., Ltd.", 31: "Tokimec Inc.",
    32: "Simplex", 33: "North Building Technologies Limited", 34: "Notifier",
    35: "Reliable Controls Corporation", 36: "Tridium Inc.", 37: "MSA Safety", 38: "Silicon Energy",
    39: "Kieback & Peter GmbH & Co KG", 40: "Anacon Systems, Inc.", 41: "Systems Controls & Instruments, LLC",
    42: "Acuity Brands Lighting, Inc.", 43: "Micropower Manufacturing", 44: "Matrix Controls",
    45: "METALAIRE", 46: "ESS Engineering", 47: "Sphere Systems Pty Ltd.", 48: "Walker Technologies Corporation",
    49: "H I Solutions, Inc.", 53: "DAIKIN Industries Ltd.", 77: "Carel Industries S.p.A.",
    80: "Fr. Sauter AG", 82: "Mitsubishi Electric Corporation, Inazawa Works",
    85: "Yamatake Building Systems Co., Ltd.", 89: "Saia-Burgess Controls, Ltd.", 105: "PRIVA BV",
    113: "Vertiv (Formerly Emerson Network Power)", 123: "Scada Engine", 127: "ABB, Inc.",
    142: "DEOS control systems GmbH", 160: "Rockwell Automation", 171: "ABB (Formerly Cylon Controls, Ltd)",
    178: "LOYTEC Electronics GmbH", 190: "Danfoss Drives A/S", 191: "Eaton Corporation",
    196: "Yokogawa Electric Corporation", 197: "Bosch Building Automation GmbH",
    222: "WAGO Kontakttechnik GmbH & Co. KG", 226: "Phoenix Contact GmbH & Co. KG",
    245: "Contemporary Control Systems, Inc.", 255: "Lennox International, Inc.",
    260: "BACnet Stack at SourceForge", 264: "Regin AB", 284: "BELIMO Automation AG", 294: "LEGRAND",
    313: "Siemens Industry, Inc.", 332: "Distech Controls SAS", 364: "Distech Controls Inc.",
    389: "Chipkin Automation Systems", 415: "Beckhoff Automation", 423: "BELIMO Automation AG",
    432: "LG Electronics Inc.", 435: "Delta Electronics, Inc.",
}
"""Names of common vendor identifiers (ASHRAE's registry); others are reported as ``unknown-<id>``."""

_SEGMENTATION = ("segmented-both", "segmented-transmit", "segmented-receive", "no-segmentation")
_ENABLE_DISABLE = ("enable", "disable", "disable-initiation")
_REINIT_STATES = ("coldstart", "warmstart", "start-backup", "end-backup", "start-restore", "end-restore",
                  "abort-restore", "activate-changes")
_EVENT_STATES = ("normal", "fault", "offnormal", "high-limit", "low-limit", "life-safety-alarm")
_NOTIFY_TYPES = ("alarm", "event", "ack-notification")
_EVENT_TYPES = _dense({0: "change-of-bitstring", 1: "change-of-state", 2: "change-of-value",
                       3: "command-failure", 4: "floating-limit", 5: "out-of-range", 6: "complex-event-type",
                       8: "change-of-life-safety", 9: "extended", 10: "buffer-ready", 11: "unsigned-range",
                       13: "access-event", 14: "double-out-of-range", 15: "signed-out-of-range",
                       16: "unsigned-out-of-range", 17: "change-of-characterstring",
                       18: "change-of-status-flags", 19: "change-of-reliability", 20: "none",
                       21: "change-of-discrete-value", 22: "change-of-timer"}, 64)
_LIFE_SAFETY_OPERATIONS = ("none", "silence", "silence-audible", "silence-visual", "reset", "reset-alarm",
                           "reset-fault", "unsilence", "unsilence-audible", "unsilence-visual")
_MESSAGE_PRIORITIES = ("normal", "urgent")
_RANGE_TYPES = {3: "by-position", 4: "by-time", 5: "time-range", 6: "by-sequence-number", 7: "by-time"}


_UNITS = _dense(_numbered("""
    0 square-meters 1 square-feet 2 milliamperes 3 amperes 4 ohms 5 volts 6 kilovolts 7 megavolts
    8 volt-amperes 9 kilovolt-amperes 10 megavolt-amperes 11 volt-amperes-reactive
    12 kilovolt-amperes-reactive 13 megavolt-amperes-reactive 14 degrees-phase 15 power-factor 16 joules
    17 kilojoules 18 watt-hours 19 kilowatt-hours 20 btus 21 therms 22 ton-hours
    23 joules-per-kilogram-dry-air 24 btus-per-pound-dry-air 25 cycles-per-hour 26 cycles-per-minute
    27 hertz 28 grams-of-water-per-kilogram-dry-air 29 percent-relative-humidity 30 millimeters 31 meters
    32 inches 33 feet 34 watts-per-square-foot 35 watts-per-square-meter 36 lumens 37 luxes 38 foot-candles
    39 kilograms 40 pounds-mass 41 tons 42 kilograms-per-second 43 kilograms-per-minute
    44 kilograms-per-hour 45 pounds-mass-per-minute 46 pounds-mass-per-hour 47 watts 48 kilowatts
    49 megawatts 50 btus-per-hour 51 horsepower 52 tons-refrigeration 53 pascals 54 kilopascals 55 bars
    56 pounds-force-per-square-inch 57 centimeters-of-water 58 inches-of-water 59 millimeters-of-mercury
    60 centimeters-of-mercury 61 inches-of-mercury 62 degrees-celsius 63 degrees-kelvin
    64 degrees-fahrenheit 65 degree-days-celsius 66 degree-days-fahrenheit 67 years 68 months 69 weeks
    70 days 71 hours 72 minutes 73 seconds 74 meters-per-second 75 kilometers-per-hour 76 feet-per-second
    77 feet-per-minute 78 miles-per-hour 79 cubic-feet 80 cubic-meters 81 imperial-gallons 82 liters
    83 us-gallons 84 cubic-feet-per-minute 85 cubic-meters-per-second 86 imperial-gallons-per-minute
    87 liters-per-second 88 liters-per-minute 89 us-gallons-per-minute 90 degrees-angular
    91 degrees-celsius-per-hour 92 degrees-celsius-per-minute 93 degrees-fahrenheit-per-hour
    94 degrees-fahrenheit-per-minute 95 no-units 96 parts-per-million 97 parts-per-billion 98 percent
    99 percent-per-second 100 per-minute 101 per-second 102 psi-per-degree-fahrenheit 103 radians
    104 revolutions-per-minute 105 currency1 106 currency2 107 currency3 108 currency4 109 currency5
    110 currency6 111 currency7 112 currency8 113 currency9 114 currency10 115 square-inches
    116 square-centimeters 117 btus-per-pound 118 centimeters 119 pounds-mass-per-second
    120 delta-degrees-fahrenheit 121 delta-degrees-kelvin 122 kilohms 123 megohms 124 millivolts
    125 kilojoules-per-kilogram 126 megajoules 127 joules-per-degree-kelvin
    128 joules-per-kilogram-degree-kelvin 129 kilohertz 130 megahertz 131 per-hour 132 milliwatts
    133 hectopascals 134 millibars 135 cubic-meters-per-hour 136 liters-per-hour
    137 kilowatt-hours-per-square-meter 138 kilowatt-hours-per-square-foot 139 megajoules-per-square-meter
    140 megajoules-per-square-foot 141 watts-per-square-meter-degree-kelvin 142 cubic-feet-per-second
    143 percent-obscuration-per-foot 144 percent-obscuration-per-meter 145 milliohms 146 megawatt-hours
    147 kilo-btus 148 mega-btus 149 kilojoules-per-kilogram-dry-air 150 megajoules-per-kilogram-dry-air
    151 kilojoules-per-degree-kelvin 152 megajoules-per-degree-kelvin 153 newton 154 grams-per-second
    155 grams-per-minute 156 tons-per-hour 157 kilo-btus-per-hour 158 hundredths-seconds 159 milliseconds
    160 newton-meters 161 millimeters-per-second 162 millimeters-per-minute 163 meters-per-minute
    164 meters-per-hour 165 cubic-meters-per-minute 166 meters-per-second-per-second 167 amperes-per-meter
    168 amperes-per-square-meter 169 ampere-square-meters 170 farads 171 henrys 172 ohm-meters 173 siemens
    174 siemens-per-meter 175 teslas 176 volts-per-degree-kelvin 177 volts-per-meter 178 webers
    179 candelas 180 candelas-per-square-meter 181 degrees-kelvin-per-hour 182 degrees-kelvin-per-minute
    183 joule-seconds 184 radians-per-second 185 square-meters-per-newton 186 kilograms-per-cubic-meter
    187 newton-seconds 188 newtons-per-meter 189 watts-per-meter-per-degree-kelvin 190 micro-siemens
    191 cubic-feet-per-hour 192 us-gallons-per-hour 193 kilometers 194 micrometers 195 grams
    196 milligrams 197 milliliters 198 milliliters-per-second 199 decibels 200 decibels-millivolt
    201 decibels-volt 202 millisiemens 203 watt-hours-reactive 204 kilowatt-hours-reactive
    205 megawatt-hours-reactive 206 millimeters-of-water 207 per-mille 208 grams-per-gram
    209 kilograms-per-kilogram 210 grams-per-kilogram 211 milligrams-per-gram 212 milligrams-per-kilogram
    213 grams-per-milliliter 214 grams-per-liter 215 milligrams-per-liter 216 micrograms-per-liter
    217 grams-per-cubic-meter 218 milligrams-per-cubic-meter 219 micrograms-per-cubic-meter
    220 nanograms-per-cubic-meter 221 grams-per-cubic-centimeter 222 becquerels 223 kilobecquerels
    224 megabecquerels 225 gray 226 milligray 227 microgray 228 sieverts 229 millisieverts
    230 microsieverts 231 microsieverts-per-hour 232 decibels-a 233 nephelometric-turbidity-unit 234 ph
    235 grams-per-square-meter 236 minutes-per-degree-kelvin 237 ohm-meter-squared-per-meter
    238 ampere-seconds 239 volt-ampere-hours 240 kilovolt-ampere-hours 241 megavolt-ampere-hours
    242 volt-ampere-hours-reactive 243 kilovolt-ampere-hours-reactive 244 megavolt-ampere-hours-reactive
    245 volt-square-hours 246 ampere-square-hours 247 joule-per-hours 248 cubic-feet-per-day
    249 cubic-meters-per-day 250 watt-hours-per-cubic-meter 251 joules-per-cubic-meter 252 mole-percent
    253 pascal-seconds 254 million-standard-cubic-feet-per-minute
"""), 256)
_RELIABILITY = _dense(_numbered("""
    0 no-fault-detected 1 no-sensor 2 over-range 3 under-range 4 open-loop 5 shorted-loop 6 no-output
    7 unreliable-other 8 process-error 9 multi-state-fault 10 configuration-error 12 communication-failure
    13 member-fault 14 monitored-object-fault 15 tripped 16 lamp-failure 17 activation-failure
    18 renew-dhcp-failure 19 renew-fd-registration-failure 20 restart-auto-negotiation-failure
    21 restart-failure 22 proprietary-command-failure 23 faults-listed 24 referenced-object-fault
"""), 25)
_BINARY_PV = ("inactive", "active")
_ENUMERATIONS: dict[int, tuple[str, ...]] = {
    36: ("normal", "fault", "offnormal", "high-limit", "low-limit", "life-safety-alarm"),  # event-state
    37: _EVENT_TYPES,
    41: ("record-access", "stream-access"),  # file-access-method
    72: ("alarm", "event", "ack-notification"),  # notify-type
    79: _OBJECT_NAMES,
    84: ("normal", "reverse"),  # polarity
    92: ("idle", "loading", "running", "waiting", "halted", "unloading"),  # program-state
    103: _RELIABILITY,
    107: ("segmented-both", "segmented-transmit", "segmented-receive", "no-segmentation"),
    112: ("operational", "operational-read-only", "download-required", "download-in-progress",
          "non-operational", "backup-in-progress"),  # system-status
    117: _UNITS,
    197: ("polled", "cov", "triggered"),  # logging-type
}
"""Enumerated property values shown by name in ``bacnet.values`` (the number stays in ``ics.values``)."""
_BINARY_TYPES = frozenset({3, 4, 5})  # binary input, output, value: present-value is inactive/active


def _enumeration(prop: int, otype: int, value: int) -> str:
    """The name of an enumerated value of property ``prop`` of an object of type ``otype``, else the number."""
    names = _ENUMERATIONS.get(prop)
    if names is None:
        if prop == 85 and otype in _BINARY_TYPES and value < 2:
            return _BINARY_PV[value]
        return str(value)
    if value < len(names) and not names[value].startswith("unknown"):
        return names[value]
    return str(value)


def object_type_name(code: int) -> str:
    """``analog-input`` for 0; ``proprietary-<n>`` from 128 on, ``unknown-<n>`` for reserved numbers."""
    return _OBJECT_NAMES[code] if 0 <= code < 1024 else f"unknown-{code}"


def property_name(code: int) -> str:
    """Standard property names; ``proprietary-<n>`` for 512..4194303, ``unknown-<n>`` for the rest."""
    name = PROPERTIES.get(code)
    if name is not None:
        return name
    return f"proprietary-{code}" if 512 <= code < 4194304 else f"unknown-{code}"


def _vendor_name(code: int) -> str:
    return VENDORS.get(code) or f"unknown-{code}"


# -- ics.operation ------------------------------------------------------------------------------------

_CONFIRMED_OPS: dict[str, str] = {
    "acknowledge_alarm": "alarm", "confirmed_cov_notification": "report", "confirmed_event_notification": "alarm",
    "get_alarm_summary": "read", "get_enrollment_summary": "read", "subscribe_cov": "read",
    "atomic_read_file": "file_read", "atomic_write_file": "file_write", "add_list_element": "write",
    "remove_list_element": "write", "create_object": "config_change", "delete_object": "config_change",
    "read_property": "read", "read_property_conditional": "read", "read_property_multiple": "read",
    "write_property": "write", "write_property_multiple": "write", "device_communication_control": "mode_change",
    "confirmed_private_transfer": "other", "confirmed_text_message": "other", "reinitialize_device": "restart",
    "vt_open": "session", "vt_close": "session", "vt_data": "session", "authenticate": "auth",
    "request_key": "auth", "read_range": "read", "life_safety_operation": "alarm",
    "subscribe_cov_property": "read", "get_event_information": "read", "subscribe_cov_property_multiple": "read",
    "confirmed_cov_notification_multiple": "report", "confirmed_audit_notification": "report",
    "audit_log_query": "read",
}
_UNCONFIRMED_OPS: dict[str, str] = {
    "i_am": "identity", "i_have": "identity", "unconfirmed_cov_notification": "report",
    "unconfirmed_event_notification": "alarm", "unconfirmed_private_transfer": "other",
    "unconfirmed_text_message": "other", "time_synchronization": "time_sync", "who_has": "discovery",
    "who_is": "discovery", "utc_time_synchronization": "time_sync", "write_group": "write",
    "unconfirmed_cov_notification_multiple": "report", "unconfirmed_audit_notification": "report",
    "who_am_i": "identity", "you_are": "config_change",
}
# Reinitialize-device states that are not a restart: backup reads the configuration out of the
# device, restore writes it back, activate-changes applies pending network settings.
_REINIT_OPS = {"start-backup": "program_upload", "end-backup": "program_upload",
               "start-restore": "program_download", "end-restore": "program_download",
               "abort-restore": "program_download", "activate-changes": "config_change"}
_NETWORK_OPS: dict[str, str] = {
    "who_is_router_to_network": "discovery", "i_am_router_to_network": "identity",
    "i_could_be_router_to_network": "identity", "reject_message_to_network": "other",
    "router_busy_to_network": "other", "router_available_to_network": "other",
    "initialize_routing_table": "config_change", "initialize_routing_table_ack": "config_change",
    "establish_connection_to_network": "session", "disconnect_connection_to_network": "session",
    "challenge_request": "auth", "security_payload": "auth", "security_response": "auth",
    "request_key_update": "auth", "update_key_set": "auth", "update_distribution_key": "auth",
    "request_master_key": "auth", "set_master_key": "auth", "what_is_network_number": "discovery",
    "network_number_is": "identity",
}
_BVLC_OPS: dict[str, str] = {
    "bvlc_result": "other", "write_broadcast_distribution_table": "config_change",
    "read_broadcast_distribution_table": "discovery", "read_broadcast_distribution_table_ack": "discovery",
    "register_foreign_device": "session", "read_foreign_device_table": "discovery",
    "read_foreign_device_table_ack": "discovery", "delete_foreign_device_table_entry": "config_change",
    "secure_bvll": "auth", "address_resolution": "discovery", "forwarded_address_resolution": "discovery",
    "address_resolution_ack": "discovery", "virtual_address_resolution": "discovery",
    "virtual_address_resolution_ack": "discovery",
}
_CONFIRMED_OP = tuple(_CONFIRMED_OPS.get(n, "other") for n in _CONFIRMED_NAMES)
_UNCONFIRMED_OP = tuple(_UNCONFIRMED_OPS.get(n, "other") for n in _UNCONFIRMED_NAMES)
# Who asks and who answers, for unconfirmed services (notifications are unsolicited).
_UNCONFIRMED_ROLE = tuple(
    "response" if n in ("i_am", "i_have") else
    "unsolicited" if "notification" in n else "request" for n in _UNCONFIRMED_NAMES)
_NETWORK_ROLE = {"i_am_router_to_network": "response", "i_could_be_router_to_network": "response",
                 "reject_message_to_network": "response", "initialize_routing_table_ack": "response",
                 "network_number_is": "response", "router_busy_to_network": "unsolicited",
                 "router_available_to_network": "unsolicited"}


def _operations() -> dict[str, str]:
    table: dict[str, str] = {}
    table.update(_BVLC_OPS)
    table.update({"distribute_broadcast_to_network": "other", "original_unicast_npdu": "other",
                  "original_broadcast_npdu": "other", "forwarded_npdu": "other"})
    table.update(_NETWORK_OPS)
    table["proprietary-<n>"] = "other"
    table.update(_CONFIRMED_OPS)
    for state, operation in _REINIT_OPS.items():
        table[f"reinitialize_device/{state}"] = operation
    table.update(_UNCONFIRMED_OPS)
    table.update({"segment_ack": "other", "reject": "other", "abort": "other"})
    # APDUs cut short before their service choice are named by their type.
    table.update({name: "other" for name in _APDU_TYPES[:6] if name != "segment_ack"})
    table["unknown-<n>"] = "other"
    return table


OPERATIONS = _operations()

# -- tags -----------------------------------------------------------------------------------------------

_APP, _CTX, _OPEN, _CLOSE = 0, 1, 2, 3
Token = tuple[int, int, int, int]  # (kind, tag number, content offset, content length; app boolean: value)


class _Malformed(Exception):
    """Internal: the service parameters do not decode as BACnet tags (becomes an anomaly)."""

    def __init__(self, reason: str, offset: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset


def _tokenize(buf: bytes, pos: int, end: int) -> list[Token]:
    """Every tag of ``buf[pos:end]`` as a flat token list; raises _Malformed on a broken tag."""
    tokens: list[Token] = []
    append = tokens.append
    while pos < end:
        b = buf[pos]
        at = pos
        pos += 1
        tag = b >> 4
        lvt = b & 7
        if tag == 15:
            if pos >= end:
                raise _Malformed("tag-truncated", at)
            tag = buf[pos]
            pos += 1
        if b & 8:
            if lvt == 6:
                append((_OPEN, tag, pos, 0))
                continue
            if lvt == 7:
                append((_CLOSE, tag, pos, 0))
                continue
            kind = _CTX
        elif tag == 1:
            append((_APP, 1, at, lvt))  # application boolean: the value is in the tag
            continue
        else:
            kind = _APP
        if lvt == 5:
            if pos >= end:
                raise _Malformed("tag-truncated", at)
            lvt = buf[pos]
            pos += 1
            if lvt >= 254:
                size = 2 if lvt == 254 else 4
                if pos + size > end:
                    raise _Malformed("tag-truncated", at)
                lvt = int.from_bytes(buf[pos:pos + size], "big")
                pos += size
        if pos + lvt > end:
            raise _Malformed("tag-overruns-data", at)
        append((kind, tag, pos, lvt))
        pos += lvt
        if len(tokens) >= MAX_TOKENS:
            raise _Malformed("too-many-tags", pos)
    return tokens


def _uint(buf: bytes, start: int, length: int) -> int:
    return int.from_bytes(buf[start:start + length], "big")


def _escape(text: str) -> str:
    """Printable text as is; control characters escaped so nothing is lost or invented."""
    if text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")


_CHARSETS = {0: "utf-8", 3: "utf-32-be", 4: "utf-16-be", 5: "latin-1"}


def _string(buf: bytes, start: int, length: int) -> str:
    """A BACnet CharacterString: one character-set octet, then the characters (bounded)."""
    if length < 1:
        return ""
    charset = buf[start]
    raw = buf[start + 1:start + length]
    codec = _CHARSETS.get(charset)
    if charset == 1 and len(raw) >= 2:  # IBM/Microsoft DBCS: a code page, then the characters
        codec = f"cp{(raw[0] << 8) | raw[1]}"
        raw = raw[2:]
    text = None
    if codec is not None:
        try:
            text = raw.decode(codec)
        except (UnicodeDecodeError, LookupError):
            text = None
    if text is None:
        text = raw.decode("latin-1")
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT]
    return _escape(text)


def _date(buf: bytes, start: int) -> str:
    """BACnet Date (year-1900, month, day, weekday); 255 = unspecified, shown as ``*``."""
    y, m, d = buf[start], buf[start + 1], buf[start + 2]
    return (("*" if y == 255 else str(1900 + y)) + "-" + ("*" if m == 255 else f"{m:02d}") + "-"
            + ("*" if d == 255 else f"{d:02d}"))


def _time(buf: bytes, start: int) -> str:
    """BACnet Time (hour, minute, second, hundredths); 255 = unspecified, shown as ``*``."""
    parts = ["*" if v == 255 else f"{v:02d}" for v in buf[start:start + 4]]
    return f"{parts[0]}:{parts[1]}:{parts[2]}.{parts[3]}"


_REAL = struct.Struct(">f")
_I = struct.Struct(">I")
_DOUBLE = struct.Struct(">d")
_HH = struct.Struct(">HH")
_BITS = tuple(format(b, "08b") for b in range(256))

# -- service grammars -----------------------------------------------------------------------------------
#
# An action says what a tag means in its service. Context tags are looked up by their tag number at
# nesting depth 0 (an int key), or by (tuple of the enclosing opening-tag numbers, tag number) deeper
# down. Application tags at depth 0 are looked up by their position (the grammar's ``app`` list).
# Opening tags may start a *region* (values, an error, a date-time, a file access block...).

A_OBJ, A_DEVICE, A_TYPE, A_PROP, A_INDEX, A_FIELD, A_PASSWORD, A_VENDOR, A_DATE, A_TIME = range(10)
R_VALUES, R_ERROR, R_SKIP, R_FILE, R_RANGE, R_ERROR_CLASS, R_ERROR_CODE = range(20, 27)

C_UINT, C_SINT, C_BOOL, C_TEXT, C_REAL, C_HEX, C_BITS = range(7)
Action = tuple[int, Any, Any]


def _field(name: str, conv: int | tuple[str, ...]) -> Action:
    """A named field: ``conv`` is a converter code or a name table for enumerations."""
    return (A_FIELD, name, conv)


OBJ: Action = (A_OBJ, None, None)
DEVICE: Action = (A_DEVICE, None, None)
TYPE: Action = (A_TYPE, None, None)
PROP: Action = (A_PROP, None, None)
INDEX: Action = (A_INDEX, None, None)
PASSWORD: Action = (A_PASSWORD, None, None)
VENDOR: Action = (A_VENDOR, None, None)
DATE: Action = (A_DATE, None, None)
TIME: Action = (A_TIME, None, None)
VALUES: Action = (R_VALUES, None, None)
ERROR: Action = (R_ERROR, None, None)
SKIP: Action = (R_SKIP, None, None)
PROCESS = _field("bacnet.process_id", C_UINT)
PRIORITY = _field("bacnet.priority", C_UINT)
LIFETIME = _field("bacnet.lifetime", C_UINT)
CONFIRMED = _field("bacnet.issue_confirmed", C_BOOL)
TEXT = _field("bacnet.message_text", C_TEXT)


class _Grammar:
    __slots__ = ("ctx", "app")

    def __init__(self, ctx: dict[Any, Action] | None = None, app: tuple[Action, ...] = ()) -> None:
        self.ctx = ctx or {}
        self.app = app


_GENERIC = _Grammar()
_RP = _Grammar({0: OBJ, 1: PROP, 2: INDEX, 3: VALUES})
_RPM_REQUEST = _Grammar({0: OBJ, ((1,), 0): PROP, ((1,), 1): INDEX})
_RPM_ACK = _Grammar({0: OBJ, ((1,), 2): PROP, ((1,), 3): INDEX, ((1,), 4): VALUES, ((1,), 5): ERROR})
_WP = _Grammar({0: OBJ, 1: PROP, 2: INDEX, 3: VALUES, 4: PRIORITY})
_WPM = _Grammar({0: OBJ, ((1,), 0): PROP, ((1,), 1): INDEX, ((1,), 2): VALUES, ((1,), 3): PRIORITY})
_LIST_ELEMENT = _Grammar({0: OBJ, 1: PROP, 2: INDEX, 3: VALUES})
_CREATE = _Grammar({((0,), 0): TYPE, ((0,), 1): OBJ, ((1,), 0): PROP, ((1,), 1): INDEX, ((1,), 2): VALUES,
                    ((1,), 3): PRIORITY})
_OBJECT_APP = _Grammar(app=(OBJ,))
_COV_NOTIFICATION = _Grammar({0: PROCESS, 1: DEVICE, 2: OBJ, 3: _field("bacnet.time_remaining", C_UINT),
                              ((4,), 0): PROP, ((4,), 1): INDEX, ((4,), 2): VALUES, ((4,), 3): PRIORITY})
_COV_MULTIPLE = _Grammar({0: PROCESS, 1: DEVICE, 2: _field("bacnet.time_remaining", C_UINT), 3: SKIP,
                          ((4,), 0): OBJ, ((4, 1), 0): PROP, ((4, 1), 1): INDEX, ((4, 1), 2): VALUES,
                          ((4, 1), 3): SKIP})
_EVENT_NOTIFICATION = _Grammar({
    0: PROCESS, 1: DEVICE, 2: OBJ, 3: SKIP, 4: _field("bacnet.notification_class", C_UINT), 5: PRIORITY,
    6: _field("bacnet.event_type", _EVENT_TYPES), 7: TEXT, 8: _field("bacnet.notify_type", _NOTIFY_TYPES),
    9: _field("bacnet.ack_required", C_BOOL), 10: _field("bacnet.from_state", _EVENT_STATES),
    11: _field("bacnet.to_state", _EVENT_STATES)})
_ACK_ALARM = _Grammar({0: PROCESS, 1: OBJ, 2: _field("bacnet.to_state", _EVENT_STATES), 3: SKIP,
                       4: _field("bacnet.acknowledgment_source", C_TEXT), 5: SKIP})
_SUBSCRIBE_COV = _Grammar({0: PROCESS, 1: OBJ, 2: CONFIRMED, 3: LIFETIME})
_SUBSCRIBE_COV_PROPERTY = _Grammar({0: PROCESS, 1: OBJ, 2: CONFIRMED, 3: LIFETIME, ((4,), 0): PROP,
                                    ((4,), 1): INDEX, 5: _field("bacnet.cov_increment", C_REAL)})
_SUBSCRIBE_COV_MULTIPLE = _Grammar({
    0: PROCESS, 1: CONFIRMED, 2: LIFETIME, 3: _field("bacnet.max_notification_delay", C_UINT),
    ((4,), 0): OBJ, ((4, 1, 0), 0): PROP, ((4, 1, 0), 1): INDEX})
_PRIVATE_TRANSFER = _Grammar({0: VENDOR, 1: _field("bacnet.service_number", C_UINT), 2: VALUES})
_TEXT_MESSAGE = _Grammar({0: DEVICE, 2: _field("bacnet.message_priority", _MESSAGE_PRIORITIES), 3: TEXT})
_DCC = _Grammar({0: _field("bacnet.duration_minutes", C_UINT), 1: _field("bacnet.enable_disable", _ENABLE_DISABLE),
                 2: PASSWORD})
_REINIT = _Grammar({0: _field("bacnet.reinitialized_state", _REINIT_STATES), 1: PASSWORD})
_LIFE_SAFETY = _Grammar({0: PROCESS, 1: _field("bacnet.requesting_source", C_TEXT),
                         2: _field("bacnet.life_safety_request", _LIFE_SAFETY_OPERATIONS), 3: OBJ})
_GET_EVENT_INFORMATION = _Grammar({0: OBJ})
_AUDIT_LOG_QUERY = _Grammar({0: OBJ})
_GET_EVENT_INFORMATION_ACK = _Grammar({((0,), 0): OBJ, ((0,), 3): SKIP,
                                       1: _field("bacnet.more_events", C_BOOL)})
_READ_RANGE = _Grammar({0: OBJ, 1: PROP, 2: INDEX, 3: (R_RANGE, None, None), 4: (R_RANGE, None, None),
                        5: (R_RANGE, None, None), 6: (R_RANGE, None, None), 7: (R_RANGE, None, None)})
_READ_RANGE_ACK = _Grammar({0: OBJ, 1: PROP, 2: INDEX, 3: _field("bacnet.result_flags", C_BITS),
                            4: _field("bacnet.item_count", C_UINT), 5: VALUES,
                            6: _field("bacnet.first_sequence_number", C_UINT)})
_FILE_REQUEST = _Grammar({0: (R_FILE, "stream", None), 1: (R_FILE, "record", None)}, (OBJ,))
_READ_FILE_ACK = _Grammar({0: (R_FILE, "stream", None), 1: (R_FILE, "record", None)},
                          (_field("bacnet.end_of_file", C_BOOL),))
_WRITE_FILE_ACK = _Grammar({0: (A_FIELD, "bacnet.file_start", C_SINT), 1: (A_FIELD, "bacnet.file_start", C_SINT)})
_WHO_IS = _Grammar({0: _field("bacnet.range_low", C_UINT), 1: _field("bacnet.range_high", C_UINT)})
_WHO_HAS = _Grammar({0: _field("bacnet.range_low", C_UINT), 1: _field("bacnet.range_high", C_UINT), 2: OBJ,
                     3: _field("bacnet.object_name", C_TEXT)})
_I_AM = _Grammar(app=(DEVICE, _field("bacnet.max_apdu_accepted", C_UINT),
                      _field("bacnet.segmentation", _SEGMENTATION), VENDOR))
_I_HAVE = _Grammar(app=(DEVICE, OBJ, _field("bacnet.object_name", C_TEXT)))
_TIME_SYNC = _Grammar(app=(DATE, TIME))
_WRITE_GROUP = _Grammar({0: _field("bacnet.group_number", C_UINT), 1: PRIORITY, 2: VALUES,
                         3: _field("bacnet.inhibit_write", C_BOOL)})
_WHO_AM_I = _Grammar(app=(VENDOR, _field("bacnet.model_name", C_TEXT), _field("bacnet.serial_number", C_TEXT)))
_YOU_ARE = _Grammar(app=(VENDOR, _field("bacnet.model_name", C_TEXT), _field("bacnet.serial_number", C_TEXT),
                         DEVICE, _field("bacnet.mac_address", C_HEX)))
_VT_OPEN = _Grammar(app=(_field("bacnet.vt_class", C_UINT), _field("bacnet.vt_session", C_UINT)))

_CONFIRMED: dict[int, _Grammar] = {
    0: _ACK_ALARM, 1: _COV_NOTIFICATION, 2: _EVENT_NOTIFICATION, 5: _SUBSCRIBE_COV, 6: _FILE_REQUEST,
    7: _FILE_REQUEST, 8: _LIST_ELEMENT, 9: _LIST_ELEMENT, 10: _CREATE, 11: _OBJECT_APP, 12: _RP,
    14: _RPM_REQUEST, 15: _WP, 16: _WPM, 17: _DCC, 18: _PRIVATE_TRANSFER, 19: _TEXT_MESSAGE, 20: _REINIT,
    21: _VT_OPEN, 26: _READ_RANGE, 27: _LIFE_SAFETY, 28: _SUBSCRIBE_COV_PROPERTY, 29: _GET_EVENT_INFORMATION,
    30: _SUBSCRIBE_COV_MULTIPLE, 31: _COV_MULTIPLE, 33: _AUDIT_LOG_QUERY,
}
_UNCONFIRMED: dict[int, _Grammar] = {
    0: _I_AM, 1: _I_HAVE, 2: _COV_NOTIFICATION, 3: _EVENT_NOTIFICATION, 4: _PRIVATE_TRANSFER,
    5: _TEXT_MESSAGE, 6: _TIME_SYNC, 7: _WHO_HAS, 8: _WHO_IS, 9: _TIME_SYNC, 10: _WRITE_GROUP,
    11: _COV_MULTIPLE, 13: _WHO_AM_I, 14: _YOU_ARE,
}
_ACKS: dict[int, _Grammar] = {
    6: _READ_FILE_ACK, 7: _WRITE_FILE_ACK, 10: _OBJECT_APP, 12: _RP, 13: _RPM_ACK, 14: _RPM_ACK,
    18: _PRIVATE_TRANSFER, 26: _READ_RANGE_ACK, 29: _GET_EVENT_INFORMATION_ACK,
    21: _Grammar(app=(_field("bacnet.vt_session", C_UINT),)),
}
_ERROR_APP = _Grammar(app=((R_ERROR_CLASS, None, None), (R_ERROR_CODE, None, None)))
_ERROR_FIRST_FAILED = _Grammar({0: ERROR, 1: _field("bacnet.first_failed_element", C_UINT)})
_ERRORS: dict[int, _Grammar] = {
    8: _ERROR_FIRST_FAILED, 9: _ERROR_FIRST_FAILED, 10: _ERROR_FIRST_FAILED,
    16: _Grammar({0: ERROR, ((1,), 0): OBJ, ((1,), 1): PROP, ((1,), 2): INDEX}),
    18: _Grammar({0: ERROR, 1: VENDOR, 2: _field("bacnet.service_number", C_UINT), 3: VALUES}),
    22: _Grammar({0: ERROR}), 30: _Grammar({0: ERROR}),
}
_SERVICE_GRAMMARS = (_CONFIRMED, _UNCONFIRMED, _ACKS, _ERRORS)
_CONFIRMED_REQ, _UNCONFIRMED_REQ, _COMPLEX_ACK, _ERROR_PDU = range(4)


# -- decoding service parameters ----------------------------------------------------------------------


def _app_value(buf: bytes, tag: int, start: int, length: int) -> tuple[str, float | None, str | None]:
    """An application-tagged primitive other than an object identifier: (text, number or None, anomaly).

    Numbers are the finite reals, doubles, (un)signed integers, enumerations and booleans (0/1).
    """
    if tag == 4:
        if length == 4:
            real = _REAL.unpack_from(buf, start)[0]
            return repr(real), (real if math.isfinite(real) else None), None
        return buf[start:start + length].hex(), None, "invalid-real-length"
    if tag == 2 or tag == 9:
        number = int.from_bytes(buf[start:start + length], "big")
        return str(number), number, None
    if tag == 1:
        return ("true", 1, None) if length else ("false", 0, None)
    if tag == 7:
        return _string(buf, start, length), None, None
    if tag == 3:
        number = int.from_bytes(buf[start:start + length], "big", signed=True)
        return str(number), number, None
    if tag == 0:
        return "null", None, None
    if tag == 5:
        if length == 8:
            double = _DOUBLE.unpack_from(buf, start)[0]
            return repr(double), (double if math.isfinite(double) else None), None
        return buf[start:start + length].hex(), None, "invalid-double-length"
    if tag == 10 or tag == 11:
        if length != 4:
            return buf[start:start + length].hex(), None, "invalid-date-time-length"
        return (_date(buf, start) if tag == 10 else _time(buf, start)), None, None
    if tag == 8:
        return _bits(buf, start, length), None, None
    text = buf[start:start + min(length, MAX_TEXT // 2)].hex()
    return text, None, (None if tag == 6 else "reserved-application-tag")


class _Service:
    """What one message's service parameters say: built once per message, copied into its event."""

    __slots__ = ("buf", "ev", "types", "instances", "prop_ids", "prop_names", "values", "numbers", "tags",
                 "error_classes", "error_codes", "obj", "obj_type", "current_type", "device", "prop",
                 "prop_code", "index", "truncated", "anomaly", "password")

    def __init__(self, buf: bytes, ev: Event) -> None:
        self.buf = buf
        self.ev = ev
        self.types: list[int] = []
        self.instances: list[int] = []
        self.prop_ids: list[int] = []
        self.prop_names: list[str] = []
        self.values: list[str] = []
        self.numbers: list[float] = []
        self.tags: list[str] = []
        self.error_classes: list[int] = []
        self.error_codes: list[int] = []
        self.obj: str | None = None  # current object identifier, as "type:instance"
        self.obj_type: int | None = None  # CreateObject by type only
        self.current_type = -1  # type of the object later properties belong to
        self.device: str | None = None
        self.prop: str | None = None
        self.prop_code = -1
        self.index: int | None = None
        self.truncated = 0
        self.anomaly: str | None = None
        self.password = False

    # -- object and property identifiers --

    def object_id(self, value: int, kind: int) -> str:
        """An object identifier: ``kind`` 0 the object addressed (later properties belong to it),
        1 a device named by the service (I-Am, initiating device...), 2 one carried as a value."""
        otype, instance = value >> 22, value & 0x3FFFFF
        if len(self.types) < MAX_IDS:
            self.types.append(otype)
            self.instances.append(instance)
        else:
            self.truncated += 1
        name = f"{_OBJECT_NAMES[otype]}:{instance}"
        if kind == 0:
            ev = self.ev
            if "bacnet.object" not in ev:
                ev["bacnet.object"] = name
                ev["bacnet.object_type"] = _OBJECT_NAMES[otype]
                ev["bacnet.object_instance"] = instance
            self.obj = name
            self.current_type = otype
            self.prop = None
            self.prop_code = -1
        elif kind == 1 and "bacnet.device_instance" not in self.ev:
            self.ev["bacnet.device_instance"] = instance
            self.device = name
        return name

    def object_type(self, otype: int) -> None:
        """CreateObject by type only: the type is known, the instance is the device's choice."""
        otype &= 0x3FF
        if "bacnet.object_type" not in self.ev:
            self.ev["bacnet.object_type"] = _OBJECT_NAMES[otype]
        self.obj_type = otype

    def property(self, code: int) -> None:
        name = property_name(code)
        if len(self.prop_ids) < MAX_IDS:
            self.prop_ids.append(code)
            self.prop_names.append(name)
        else:
            self.truncated += 1
        ev = self.ev
        if "bacnet.property" not in ev:
            ev["bacnet.property"] = name
        self.prop = name
        self.prop_code = code
        self.index = None
        owner = self.obj or (self.device if self.device is not None and self.obj_type is None else None)
        if owner is None and self.obj_type is not None:
            owner = _OBJECT_NAMES[self.obj_type]
        self.tag(f"{owner}/{name}" if owner else name)

    def array_index(self, index: int) -> None:
        ev = self.ev
        if "bacnet.array_index" not in ev:
            ev["bacnet.array_index"] = index
        if self.prop is not None and self.tags and self.tags[-1].endswith(self.prop):
            self.tags[-1] = f"{self.tags[-1]}[{index}]"

    def tag(self, text: str) -> None:
        if len(self.tags) < MAX_ITEMS:
            self.tags.append(text)
        else:
            self.truncated += 1

    # -- values --

    def value(self, tag: int, start: int, length: int) -> None:
        """One application-tagged value: its text in bacnet.values, numbers also in ics.values."""
        if tag == 12:
            if length != 4:
                self.anomaly = self.anomaly or "invalid-object-identifier"
                return
            text = self.object_id(_uint(self.buf, start, 4), 2)
            number = None
        else:
            text, number, problem = _app_value(self.buf, tag, start, length)
            if problem is not None:
                self.anomaly = self.anomaly or problem
            elif tag == 9 and self.prop_code >= 0:
                text = _enumeration(self.prop_code, self.current_type, number)  # type: ignore[arg-type]
        if len(self.values) < MAX_ITEMS:
            self.values.append(text)
        else:
            self.truncated += 1
        if number is not None and len(self.numbers) < MAX_ITEMS:
            self.numbers.append(number)

    # -- the walk --

    def walk(self, tokens: list[Token], grammar: _Grammar) -> None:
        ctx, app = grammar.ctx, grammar.app
        path: tuple[int, ...] = ()
        position = 0
        i, n = 0, len(tokens)
        while i < n:
            kind, tag, start, length = tokens[i]
            i += 1
            if kind == _APP:
                if not path and position < len(app):
                    self.app_action(app[position], tag, start, length)
                    position += 1
                else:
                    self.value(tag, start, length)
            elif kind == _CTX:
                action = ctx.get((path, tag) if path else tag)
                if action is not None:
                    self.ctx_action(action, tag, start, length)
            elif kind == _OPEN:
                action = ctx.get((path, tag) if path else tag)
                if action is not None and action[0] >= R_VALUES:
                    i = self.region(action, tag, tokens, i)
                else:
                    path = (*path, tag)
            elif path and path[-1] == tag:
                path = path[:-1]
            else:
                self.anomaly = self.anomaly or "unbalanced-tags"
        if path:
            self.anomaly = self.anomaly or "unbalanced-tags"

    def ctx_action(self, action: Action, tag: int, start: int, length: int) -> None:
        kind = action[0]
        buf = self.buf
        if kind == A_PROP:
            self.property(_uint(buf, start, length))
        elif kind == A_OBJ or kind == A_DEVICE:
            if length == 4:
                self.object_id(_uint(buf, start, 4), 1 if kind == A_DEVICE else 0)
            else:
                self.anomaly = self.anomaly or "invalid-object-identifier"
        elif kind == A_INDEX:
            self.array_index(_uint(buf, start, length))
        elif kind == A_FIELD:
            self.ev[action[1]] = _convert(buf, start, length, action[2])
        elif kind == A_TYPE:
            self.object_type(_uint(buf, start, length))
        elif kind == A_VENDOR:
            self.vendor(_uint(buf, start, length))
        elif kind == A_PASSWORD:
            self.password = True  # present; the characters are never decoded

    def app_action(self, action: Action, tag: int, start: int, length: int) -> None:
        kind = action[0]
        buf = self.buf
        if kind == A_OBJ or kind == A_DEVICE:
            if tag == 12 and length == 4:
                self.object_id(_uint(buf, start, 4), 1 if kind == A_DEVICE else 0)
                return
        elif kind == A_FIELD:
            conv = action[2]
            if tag == 7 and conv == C_TEXT:
                self.ev[action[1]] = _string(buf, start, length)
                return
            if tag == 1 and conv == C_BOOL:
                self.ev[action[1]] = bool(length)
                return
            if tag in (2, 3, 9, 6) and conv != C_TEXT and conv != C_BOOL:
                self.ev[action[1]] = _convert(buf, start, length, conv)
                return
        elif kind == A_VENDOR:
            if tag == 2:
                self.vendor(_uint(buf, start, length))
                return
        elif kind == A_DATE or kind == A_TIME:
            if (tag == 10 if kind == A_DATE else tag == 11) and length == 4:
                text = _date(buf, start) if kind == A_DATE else _time(buf, start)
                ev = self.ev
                ev["bacnet.time"] = f"{ev['bacnet.time']}T{text}" if "bacnet.time" in ev else text
                return
        elif kind == R_ERROR_CLASS or kind == R_ERROR_CODE:
            if tag == 9:
                self.error(kind == R_ERROR_CLASS, _uint(buf, start, length))
                return
        self.anomaly = self.anomaly or "unexpected-tag"
        self.value(tag, start, length)

    def vendor(self, code: int) -> None:
        self.ev["bacnet.vendor_id"] = code
        self.ev["bacnet.vendor"] = _vendor_name(code)

    def error(self, is_class: bool, code: int) -> None:
        """An error class or code: of the Error PDU, or of one property of a ReadPropertyMultiple ack."""
        errors = self.error_classes if is_class else self.error_codes
        if len(errors) < MAX_ITEMS:
            errors.append(code)
        else:
            self.truncated += 1

    def region(self, action: Action, tag: int, tokens: list[Token], i: int) -> int:
        """Tokens inside an opening tag that starts a region; returns the index after its closing tag."""
        kind = action[0]
        depth = 1
        position = 0
        n = len(tokens)
        errors = 0
        while i < n:
            k, t, start, length = tokens[i]
            i += 1
            if k == _OPEN:
                depth += 1
            elif k == _CLOSE:
                depth -= 1
                if depth == 0:
                    if t != tag:
                        self.anomaly = self.anomaly or "unbalanced-tags"
                    return i
            elif kind == R_SKIP:
                continue
            elif kind == R_VALUES:
                if k == _APP:
                    self.value(t, start, length)
            elif kind == R_ERROR:
                if k == _APP and t == 9 and errors < 2:
                    self.error(errors == 0, _uint(self.buf, start, length))
                    errors += 1
            elif kind == R_FILE:
                if k == _APP:
                    self.file_item(action[1], position, t, start, length)
                    position += 1
            elif kind == R_RANGE:
                if k == _APP:
                    self.range_item(tag, position, t, start, length)
                    position += 1
        self.anomaly = self.anomaly or "unbalanced-tags"
        return i

    def file_item(self, access: str, position: int, tag: int, start: int, length: int) -> None:
        """Stream access: start position, then an octet count (request) or the data; record access:
        start record, record count, then the records."""
        ev = self.ev
        buf = self.buf
        ev["bacnet.file_access"] = access
        if position == 0 and tag == 3:
            ev["bacnet.file_start"] = int.from_bytes(buf[start:start + length], "big", signed=True)
        elif tag == 2 and "bacnet.file_count" not in ev:
            ev["bacnet.file_count"] = _uint(buf, start, length)
        elif tag == 6:
            ev["bacnet.file_data_length"] = ev.get("bacnet.file_data_length", 0) + length
        else:
            self.anomaly = self.anomaly or "unexpected-tag"

    def range_item(self, choice: int, position: int, tag: int, start: int, length: int) -> None:
        """ReadRange: a reference (index, sequence number, or date and time), then a signed count."""
        ev = self.ev
        ev["bacnet.range_type"] = _RANGE_TYPES.get(choice, f"unknown-{choice}")
        if tag == 2 and position == 0:
            ev["bacnet.range_reference"] = _uint(self.buf, start, length)
        elif tag == 3:
            ev["bacnet.range_count"] = int.from_bytes(self.buf[start:start + length], "big", signed=True)
        elif tag in (10, 11) and length == 4:
            text = _date(self.buf, start) if tag == 10 else _time(self.buf, start)
            ev["bacnet.time"] = f"{ev['bacnet.time']}T{text}" if "bacnet.time" in ev else text

    def finish(self) -> None:
        """Copy the lists into the event (only the non-empty ones)."""
        ev = self.ev
        if self.types:
            ev["bacnet.object_type_codes"] = self.types
            if self.instances:
                ev["bacnet.object_instances"] = self.instances
        if self.prop_ids:
            ev["bacnet.property_ids"] = self.prop_ids
            ev["bacnet.properties"] = self.prop_names
        if self.values:
            ev["bacnet.values"] = self.values
        if self.numbers:
            ev["ics.values"] = self.numbers
        if self.tags:
            ev["ics.tag"] = self.tags
        elif "bacnet.object" in ev:
            ev["ics.tag"] = [ev["bacnet.object"]]
        elif self.device is not None:
            ev["ics.tag"] = [self.device]
        if self.error_classes:
            ev["bacnet.error_class_code"] = self.error_classes
            ev["bacnet.error_class"] = [_ERROR_CLASSES[c] if c < 256 else f"unknown-{c}" for c in self.error_classes]
        if self.error_codes:
            ev["bacnet.error_code"] = self.error_codes
            ev["bacnet.error"] = [_ERROR_CODE_NAMES[c] if c < 256 else f"unknown-{c}" for c in self.error_codes]
        if self.password:
            ev["bacnet.password_present"] = True
        if self.truncated:
            ev["bacnet.truncated"] = self.truncated


def _bits(buf: bytes, start: int, length: int) -> str:
    """A BACnet BitString: an unused-bits octet, then the bits, first bit first ("0100...")."""
    if length < 1:
        return ""
    unused = buf[start] & 7
    bits = "".join(_BITS[b] for b in buf[start + 1:start + min(length, 1 + MAX_TEXT // 8)])
    if length - 1 <= MAX_TEXT // 8 and unused:
        bits = bits[:-unused]
    return bits


def _convert(buf: bytes, start: int, length: int, conv: int | tuple[str, ...]) -> Any:
    if conv == C_UINT:
        return _uint(buf, start, length)
    if isinstance(conv, tuple):
        code = _uint(buf, start, length)
        return conv[code] if code < len(conv) else f"unknown-{code}"
    if conv == C_BOOL:
        return bool(buf[start]) if length else False
    if conv == C_TEXT:
        return _string(buf, start, length)
    if conv == C_SINT:
        return int.from_bytes(buf[start:start + length], "big", signed=True)
    if conv == C_REAL:
        return _REAL.unpack_from(buf, start)[0] if length == 4 else None
    if conv == C_BITS:
        return _bits(buf, start, length)
    return buf[start:start + min(length, MAX_TEXT // 2)].hex()


def _fast_read_property(buf: bytes, s: int, end: int, ev: Event, ack: bool) -> bool:
    """ReadProperty request or ack in its everyday shape, without tokenizing: object identifier [0],
    property [1] (1-4 octets), optional array index [2], and (ack) one primitive application value in
    [3]. Returns False, having written nothing, for anything else (the general walk handles it)."""
    if end - s < 7 or buf[s] != 0x0C:
        return False
    b = buf[s + 5]
    plen = b & 7
    if b & 0xF8 != 0x18 or not 1 <= plen <= 4:
        return False
    pos = s + 6 + plen
    if pos > end:
        return False
    index = -1
    if pos < end and buf[pos] & 0xF8 == 0x28:
        ilen = buf[pos] & 7
        if not 1 <= ilen <= 4 or pos + 1 + ilen > end:
            return False
        index = int.from_bytes(buf[pos + 1:pos + 1 + ilen], "big")
        pos += 1 + ilen
    tag = length = vs = 0
    if ack:
        if end - pos < 3 or buf[pos] != 0x3E or buf[end - 1] != 0x3F:
            return False
        t = buf[pos + 1]
        tag, length, vs = t >> 4, t & 7, pos + 2
        if t & 8 or tag == 15 or (tag == 12 and length != 4):
            return False
        if tag == 1:
            if vs != end - 1:
                return False
        else:
            if length == 5:
                length = buf[vs]
                vs += 1
                if length >= 254:
                    return False
            if vs + length != end - 1:
                return False
    elif pos != end:
        return False
    oid = _I.unpack_from(buf, s + 1)[0]
    otype, instance = oid >> 22, oid & 0x3FFFFF
    tname = _OBJECT_NAMES[otype]
    obj = f"{tname}:{instance}"
    prop = buf[s + 6] if plen == 1 else int.from_bytes(buf[s + 6:s + 6 + plen], "big")
    pname = PROPERTIES.get(prop) or property_name(prop)
    if ack:
        if tag == 12:
            value = _I.unpack_from(buf, vs)[0]
            types, instances = [otype, value >> 22], [instance, value & 0x3FFFFF]
            ev["bacnet.values"] = [f"{_OBJECT_NAMES[value >> 22]}:{value & 0x3FFFFF}"]
        else:
            text, number, problem = _app_value(buf, tag, vs, length)
            if problem is not None:
                return False
            if tag == 9:
                text = _enumeration(prop, otype, number)  # type: ignore[arg-type]
            types, instances = [otype], [instance]
            ev["bacnet.values"] = [text]
            if number is not None:
                ev["ics.values"] = [number]
    else:
        types, instances = [otype], [instance]
    ev["bacnet.object"] = obj
    ev["bacnet.object_type"] = tname
    ev["bacnet.object_instance"] = instance
    ev["bacnet.property"] = pname
    ev["bacnet.object_type_codes"] = types
    ev["bacnet.object_instances"] = instances
    ev["bacnet.property_ids"] = [prop]
    ev["bacnet.properties"] = [pname]
    if index < 0:
        ev["ics.tag"] = [f"{obj}/{pname}"]
    else:
        ev["bacnet.array_index"] = index
        ev["ics.tag"] = [f"{obj}/{pname}[{index}]"]
    return True


def _decode_service(buf: bytes, start: int, end: int, grammar: _Grammar, ev: Event) -> str | None:
    """Decode service parameters into ``ev``; returns an anomaly reason or None."""
    service = _Service(buf, ev)
    try:
        tokens = _tokenize(buf, start, end)
    except _Malformed as exc:
        ev["bacnet.error_offset"] = exc.offset
        return exc.reason
    service.walk(tokens, grammar)
    service.finish()
    return service.anomaly


def _bip(buf: bytes, at: int) -> tuple[str, int]:
    """A B/IP address: 4 octets of IPv4 address and a 2-octet port."""
    return f"{buf[at]}.{buf[at + 1]}.{buf[at + 2]}.{buf[at + 3]}", (buf[at + 4] << 8) | buf[at + 5]


def _bip6(buf: bytes, at: int) -> tuple[str, int]:
    return str(ipaddress.IPv6Address(bytes(buf[at:at + 16]))), (buf[at + 16] << 8) | buf[at + 17]


# -- the per-flow session -----------------------------------------------------------------------------

PairKey = tuple[int, bool, bytes, bytes]
_INHERIT = ("bacnet.object", "bacnet.object_type", "bacnet.object_instance", "bacnet.property",
            "bacnet.array_index", "bacnet.priority", "ics.tag", "bacnet.file_access")
_INHERIT_WRITTEN = ("bacnet.values", "ics.values")
_WRITES = frozenset({"write_property", "write_property_multiple", "add_list_element", "remove_list_element"})


class _Assembly:
    """A segmented message being put back together (in-order segments only)."""

    __slots__ = ("started", "parts", "size", "expected", "service", "broken")

    def __init__(self, started: float, service: int) -> None:
        self.started = started
        self.parts: list[bytes] = []
        self.size = 0
        self.expected = 0
        self.service = service
        self.broken = False


class BacnetSession:
    """Per-flow state: outstanding confirmed requests, segmented messages, the last BVLC request."""

    __slots__ = ("_pending", "_assemblies", "_bvlc_pending", "max_outstanding", "timeout", "stats")

    def __init__(self, max_outstanding: int = MAX_OUTSTANDING, timeout: float = PAIR_TIMEOUT) -> None:
        self._pending: dict[PairKey, tuple[float, Event]] = {}
        self._assemblies: dict[tuple[int, bool, bytes, bytes, int], _Assembly] = {}
        self._bvlc_pending: list[tuple[float, str] | None] = [None, None]
        self.max_outstanding = max_outstanding
        self.timeout = timeout
        self.stats = {"pdus": 0, "anomalies": 0, "paired": 0, "unpaired_responses": 0, "requests_dropped": 0,
                      "requests_timed_out": 0, "segments": 0, "reassembled": 0, "reassembly_failed": 0,
                      "assemblies_dropped": 0, "items_truncated": 0}

    # -- the Session protocol ------------------------------------------------------------------------

    def feed(self, data: bytes, to_server: bool, ts: float) -> list[Event]:
        n = len(data)
        if n < 4 or (data[0] != 0x81 and data[0] != 0x82):
            raise ProtocolViolation("not-bvlc", 0)
        function = data[1]
        length = (data[2] << 8) | data[3]
        if length < 4:
            raise ProtocolViolation("bvlc-length-too-small", 2)
        ipv4 = data[0] == 0x81
        name = (_BVLC4_NAMES if ipv4 else _BVLC6_NAMES)[function]
        ev: Event = {"bacnet.bvlc.function_code": function, "bacnet.bvlc.function": name}
        anomalies: list[str] = []
        if not ipv4:
            ev["bacnet.bvlc.type"] = 0x82
        if length != n:  # the datagram bounds the message; a length field that disagrees is reported
            ev["bacnet.bvlc.length"] = length
            anomalies.append("bvlc-length-mismatch")
        npdu_at = (_NPDU_AT4 if ipv4 else _NPDU_AT6)[function]
        if npdu_at:
            if not ipv4:
                self._bvlc6_addresses(data, function, n, ev)
            elif function == 0x04 and n >= 10:
                ip, port = _bip(data, 4)
                ev["bacnet.bvlc.original_source_ip"] = ip
                ev["bacnet.bvlc.original_source_port"] = port
            if n < npdu_at + 2:
                anomalies.append("npdu-truncated")
                ev["event.action"] = ev["ics.function"] = name
                ev["ics.operation"] = "other"
            else:
                broadcast = function in (_BROADCASTS4 if ipv4 else _BROADCASTS6)
                self._npdu(data, npdu_at, n, ev, to_server, ts, anomalies, broadcast)
        else:
            self._bvlc_only(data, function, n, ipv4, ev, to_server, ts, anomalies)
        stats = self.stats
        if "bacnet.truncated" in ev:
            stats["items_truncated"] += ev["bacnet.truncated"]
        if anomalies:
            ev["event.type"] = _ERROR_TYPE
            ev["bacnet.anomaly"] = anomalies
            stats["anomalies"] += 1
        stats["pdus"] += 1
        return [ev]

    def on_gap(self, nbytes: int, to_server: bool) -> None:
        """UDP has no stream to lose; nothing to resynchronise."""

    def finish(self, ts: float) -> list[Event]:
        """Every message was reported when it arrived; unfinished reassemblies are counted."""
        self.stats["reassembly_failed"] += len(self._assemblies)
        self._assemblies.clear()
        self._pending.clear()
        return []

    # -- BVLC ----------------------------------------------------------------------------------------

    def _bvlc_only(self, data: bytes, function: int, end: int, ipv4: bool, ev: Event, to_server: bool,
                   ts: float, anomalies: list[str]) -> None:
        """BVLC functions that carry no NPDU: results, tables, foreign-device registration."""
        name = ev["bacnet.bvlc.function"]
        ev["event.action"] = ev["ics.function"] = name
        ev["ics.operation"] = _BVLC_OPS.get(name, "other")
        fixed = (_FIXED4 if ipv4 else _FIXED6).get(function)
        if name.startswith("unknown"):
            anomalies.append("unknown-bvlc-function")
        elif fixed is not None and end != fixed:
            anomalies.append("bvlc-length-invalid")
        d = 0 if to_server else 1
        if function == 0:  # BVLC-Result
            at = 4 if ipv4 else 7
            if not ipv4 and end >= 7:
                ev["bacnet.bvlc.virtual_source"] = _uint(data, 4, 3)
            ev["ics.role"] = "response"
            if end >= at + 2:
                code = (data[at] << 8) | data[at + 1]
                result = (_BVLC4_RESULTS if ipv4 else _BVLC6_RESULTS).get(code)
                ev["bacnet.bvlc.result_code"] = code
                ev["bacnet.bvlc.result"] = result or f"unknown-{code}"
                ok = code == 0
                ev["ics.status"] = "ok" if ok else (result or f"unknown-{code}")
                ev["event.outcome"] = "success" if ok else "failure"
                if result is None:
                    anomalies.append("unknown-bvlc-result")
            asked = self._bvlc_pending[1 - d]
            if asked is not None and ts - asked[0] <= self.timeout:
                self._bvlc_pending[1 - d] = None
                ev["event.action"] = ev["ics.function"] = asked[1]
                ev["ics.operation"] = _BVLC_OPS.get(asked[1], "other")
            return
        ev["ics.role"] = "response" if name.endswith("_ack") else "request"
        if ev["ics.role"] == "request":
            self._bvlc_pending[d] = (ts, name)
        if not ipv4:
            self._bvlc6_addresses(data, function, end, ev)
            if function == 0x09 and end >= 9:
                ev["bacnet.bvlc.ttl"] = (data[7] << 8) | data[8]
            return
        if function == 0x05 and end >= 6:
            ev["bacnet.bvlc.ttl"] = (data[4] << 8) | data[5]
        elif function in (0x01, 0x03, 0x07):
            size = 10
            entries: list[dict[str, Any]] = []
            pos = 4
            if (end - 4) % size:
                anomalies.append("bvlc-length-invalid")
            while pos + size <= end:
                ip, port = _bip(data, pos)
                if function == 0x07:
                    ttl, remaining = _HH.unpack_from(data, pos + 6)
                    entry: dict[str, Any] = {"ip": ip, "port": port, "ttl": ttl, "remaining": remaining}
                else:
                    entry = {"ip": ip, "port": port, "mask": ".".join(str(b) for b in data[pos + 6:pos + 10])}
                if len(entries) < MAX_ITEMS:
                    entries.append(entry)
                else:
                    ev["bacnet.truncated"] = ev.get("bacnet.truncated", 0) + 1
                pos += size
            ev["bacnet.bvlc.entries"] = entries
            ev["bacnet.bvlc.entry_count"] = (end - 4) // size
        elif function == 0x08 and end >= 10:
            ip, port = _bip(data, 4)
            ev["bacnet.bvlc.entries"] = [{"ip": ip, "port": port}]
            ev["bacnet.bvlc.entry_count"] = 1

    @staticmethod
    def _bvlc6_addresses(data: bytes, function: int, end: int, ev: Event) -> None:
        """BACnet/IPv6: virtual (3-octet) source and destination addresses, original sources."""
        if end >= 7:
            ev["bacnet.bvlc.virtual_source"] = _uint(data, 4, 3)
        if function in (0x01, 0x03, 0x04, 0x05, 0x07) and end >= 10:
            ev["bacnet.bvlc.virtual_destination"] = _uint(data, 7, 3)
        at = 7 if function == 0x08 else 10 if function == 0x04 else 7 if function == 0x0A else 0
        if at and end >= at + 18:
            ip, port = _bip6(data, at)
            ev["bacnet.bvlc.original_source_ip"] = ip
            ev["bacnet.bvlc.original_source_port"] = port

    # -- NPDU ----------------------------------------------------------------------------------------

    def _npdu(self, data: bytes, pos: int, end: int, ev: Event, to_server: bool, ts: float,
              anomalies: list[str], broadcast: bool) -> None:
        version, control = data[pos], data[pos + 1]
        ev["bacnet.npdu.version"] = version
        ev["bacnet.npdu.control"] = control
        ev["bacnet.npdu.expecting_reply"] = control & 0x04 == 0x04
        ev["bacnet.npdu.priority"] = _PRIORITIES[control & 3]
        if version != 1:
            anomalies.append("npdu-version")
        if control & 0x50:
            anomalies.append("npdu-reserved-bits")
        pos += 2
        daddr = saddr = b""
        if control & 0x28:
            pos, daddr, saddr = self._addresses(data, pos, end, control, ev, anomalies)
            if len(daddr) == 3:  # DLEN 0: a broadcast on the destination network (DNET 65535: on all)
                broadcast = True
            if pos < 0:
                ev["event.action"] = ev["ics.function"] = ev["bacnet.bvlc.function"]
                ev["ics.operation"] = "other"
                return
        if control & 0x80:
            self._network_message(data, pos, end, ev, anomalies)
        elif pos >= end:
            anomalies.append("apdu-missing")
            ev["event.action"] = ev["ics.function"] = ev["bacnet.bvlc.function"]
            ev["ics.operation"] = "other"
            return
        else:
            self._apdu(data, pos, end, ev, to_server, ts, anomalies, broadcast, saddr, daddr)
        if control & 0x28:  # ics.unit: the device behind a router, destination of a request, else source
            if ev.get("ics.role") == "request":
                if "bacnet.npdu.dadr" in ev:
                    ev["ics.unit"] = f"{ev['bacnet.npdu.dnet']}:{ev['bacnet.npdu.dadr']}"
            elif saddr:
                ev["ics.unit"] = f"{ev['bacnet.npdu.snet']}:{ev.get('bacnet.npdu.sadr', '')}"

    @staticmethod
    def _addresses(data: bytes, pos: int, end: int, control: int, ev: Event,
                   anomalies: list[str]) -> tuple[int, bytes, bytes]:
        """DNET/DLEN/DADR, SNET/SLEN/SADR and the hop count.

        Returns the offset after them (-1: truncated) and the raw destination and source network
        addresses (network number, length, MAC; empty when absent), which key the pairing.
        """
        daddr = saddr = b""
        if control & 0x20:
            if pos + 3 > end:
                anomalies.append("npdu-truncated")
                return -1, daddr, saddr
            dnet, dlen = (data[pos] << 8) | data[pos + 1], data[pos + 2]
            if pos + 3 + dlen > end:
                anomalies.append("npdu-truncated")
                return -1, daddr, saddr
            ev["bacnet.npdu.dnet"] = dnet
            ev["bacnet.npdu.dlen"] = dlen
            if dlen:
                ev["bacnet.npdu.dadr"] = str(data[pos + 3]) if dlen == 1 else data[pos + 3:pos + 3 + dlen].hex()
            daddr = data[pos:pos + 3 + dlen]
            if dnet == 0:
                anomalies.append("dnet-zero")
            pos += 3 + dlen
        if control & 0x08:
            if pos + 3 > end:
                anomalies.append("npdu-truncated")
                return -1, daddr, saddr
            snet, slen = (data[pos] << 8) | data[pos + 1], data[pos + 2]
            if pos + 3 + slen > end:
                anomalies.append("npdu-truncated")
                return -1, daddr, saddr
            ev["bacnet.npdu.snet"] = snet
            ev["bacnet.npdu.slen"] = slen
            if slen:
                ev["bacnet.npdu.sadr"] = str(data[pos + 3]) if slen == 1 else data[pos + 3:pos + 3 + slen].hex()
            else:
                anomalies.append("slen-zero")
            if snet == 0 or snet == 0xFFFF:
                anomalies.append("snet-invalid")
            saddr = data[pos:pos + 3 + slen]
            pos += 3 + slen
        if control & 0x20:
            if pos >= end:
                anomalies.append("npdu-truncated")
                return -1, daddr, saddr
            ev["bacnet.npdu.hop_count"] = data[pos]
            pos += 1
        return pos, daddr, saddr

    def _network_message(self, data: bytes, pos: int, end: int, ev: Event, anomalies: list[str]) -> None:
        """Network-layer messages (clause 6.4): routing discovery and configuration."""
        if pos >= end:
            anomalies.append("npdu-truncated")
            ev["event.action"] = ev["ics.function"] = ev["bacnet.bvlc.function"]
            ev["ics.operation"] = "other"
            return
        mtype = data[pos]
        pos += 1
        name = _NETWORK_NAMES[mtype]
        ev["bacnet.npdu.message_type_code"] = mtype
        ev["bacnet.npdu.message_type"] = name
        ev["event.action"] = ev["ics.function"] = name
        ev["ics.operation"] = _NETWORK_OPS.get(name, "other")
        ev["ics.role"] = _NETWORK_ROLE.get(name, "request")
        if mtype >= 0x80:
            if pos + 2 > end:
                anomalies.append("npdu-truncated")
                return
            ev["bacnet.npdu.vendor_id"] = (data[pos] << 8) | data[pos + 1]
            return
        if name.startswith("unknown"):
            anomalies.append("reserved-network-message")
            return
        networks: list[int] = []
        rest = end - pos
        if mtype in (0x00, 0x01, 0x04, 0x05, 0x09):  # DNETs (who-is: at most one)
            if rest & 1 or (mtype == 0x09 and rest != 2) or (mtype == 0x00 and rest not in (0, 2)):
                anomalies.append("network-message-length")
            for at in range(pos, end - 1, 2):
                networks.append((data[at] << 8) | data[at + 1])
        elif mtype == 0x02 or mtype == 0x08:  # DNET, performance index / termination time
            if rest != 3:
                anomalies.append("network-message-length")
            if rest >= 2:
                networks.append((data[pos] << 8) | data[pos + 1])
            if rest >= 3:
                key = "bacnet.npdu.performance_index" if mtype == 0x02 else "bacnet.npdu.termination_time"
                ev[key] = data[pos + 2]
        elif mtype == 0x03:  # reason, DNET
            if rest != 3:
                anomalies.append("network-message-length")
            if rest >= 1:
                reason = data[pos]
                ev["bacnet.npdu.reject_reason_code"] = reason
                ev["bacnet.npdu.reject_reason"] = ev["ics.status"] = _NETWORK_REJECTS[reason]
                ev["event.outcome"] = "failure"
            if rest >= 3:
                networks.append((data[pos + 1] << 8) | data[pos + 2])
        elif mtype == 0x06 or mtype == 0x07:  # routing table: count, then DNET, port id, info
            if rest >= 1:
                count = data[pos]
                at = pos + 1
                ports: list[dict[str, Any]] = []
                for _ in range(count):
                    if at + 4 > end or at + 4 + data[at + 3] > end:
                        anomalies.append("network-message-length")
                        break
                    info = data[at + 3]
                    dnet = (data[at] << 8) | data[at + 1]
                    networks.append(dnet)
                    if len(ports) < MAX_ITEMS:
                        ports.append({"dnet": dnet, "port_id": data[at + 2],
                                      "port_info": data[at + 4:at + 4 + info].hex()})
                    at += 4 + info
                ev["bacnet.npdu.routing_table"] = ports
                ev["bacnet.npdu.routing_table_count"] = count
        elif mtype == 0x13:  # DNET, learned or configured
            if rest != 3:
                anomalies.append("network-message-length")
            if rest >= 2:
                networks.append((data[pos] << 8) | data[pos + 1])
            if rest >= 3:
                ev["bacnet.npdu.network_number_status"] = ("learned", "configured")[data[pos + 2] & 1]
        if networks:
            ev["bacnet.npdu.networks"] = networks[:MAX_ITEMS]

    # -- APDU ----------------------------------------------------------------------------------------

    def _apdu(self, data: bytes, pos: int, end: int, ev: Event, to_server: bool, ts: float,
              anomalies: list[str], broadcast: bool, saddr: bytes, daddr: bytes) -> None:
        b0 = data[pos]
        ptype = b0 >> 4
        ev["bacnet.apdu.type_code"] = ptype
        ev["bacnet.apdu.type"] = _APDU_TYPES[ptype]
        size = end - pos
        if ptype == 0:
            self._confirmed(data, pos, end, ev, to_server, ts, anomalies, broadcast, saddr, daddr)
        elif ptype == 1:
            if size < 2:
                return self._short(ev, anomalies, "unconfirmed_request")
            service = data[pos + 1]
            name = _UNCONFIRMED_NAMES[service]
            ev["bacnet.unconfirmed_service_code"] = service
            ev["bacnet.service"] = ev["event.action"] = ev["ics.function"] = name
            ev["ics.operation"] = _UNCONFIRMED_OP[service]
            ev["ics.role"] = _UNCONFIRMED_ROLE[service]
            grammar = _UNCONFIRMED.get(service)
            if size > 2 or grammar is not None:
                reason = _decode_service(data, pos + 2, end, grammar or _GENERIC, ev)
                if reason:
                    anomalies.append(reason)
            if service == 8:
                self._who_is(ev, anomalies)
        elif ptype == 2 or ptype == 5:
            if size < 3:
                return self._short(ev, anomalies, _APDU_TYPES[ptype])
            invoke, service = data[pos + 1], data[pos + 2]
            ev["bacnet.apdu.invoke_id"] = invoke
            ev["bacnet.confirmed_service_code"] = service
            name = _CONFIRMED_NAMES[service]
            self._answer(ev, name, _CONFIRMED_OP[service])
            if ptype == 2:
                if size != 3:
                    anomalies.append("apdu-length-invalid")
                self._respond(ev, ts, (invoke, not to_server, daddr, saddr), service, "ok", anomalies)
            else:
                reason = _decode_service(data, pos + 3, end, _ERRORS.get(service, _ERROR_APP), ev)
                if reason:
                    anomalies.append(reason)
                status = ev["bacnet.error"][0] if "bacnet.error" in ev else "error"
                self._respond(ev, ts, (invoke, not to_server, daddr, saddr), service, status, anomalies)
        elif ptype == 3:
            self._complex_ack(data, pos, end, ev, to_server, ts, anomalies, saddr, daddr)
        elif ptype == 4:
            if size < 4:
                return self._short(ev, anomalies, "segment_ack")
            invoke = data[pos + 1]
            server = bool(b0 & 1)
            ev["bacnet.apdu.nak"] = bool(b0 & 2)
            ev["bacnet.apdu.server"] = server
            ev["bacnet.apdu.invoke_id"] = invoke
            ev["bacnet.apdu.sequence_number"] = data[pos + 2]
            ev["bacnet.apdu.window_size"] = data[pos + 3]
            ev["event.action"] = ev["ics.function"] = "segment_ack"
            ev["ics.operation"] = "other"
            ev["ics.role"] = "response" if server else "request"
            # The transaction: the client's request (and its segments) or the server's segmented ack.
            key = (invoke, not to_server, daddr, saddr) if server else (invoke, to_server, saddr, daddr)
            pending = self._pending.get(key)
            asm = self._assemblies.get((*key, 0) if server else (invoke, not to_server, daddr, saddr, 3))
            if pending is not None:
                ev["bacnet.service"] = pending[1]["bacnet.service"]
            elif asm is not None:
                ev["bacnet.service"] = _CONFIRMED_NAMES[asm.service]
            if size != 4:
                anomalies.append("apdu-length-invalid")
        elif ptype == 6 or ptype == 7:
            if size < 3:
                return self._short(ev, anomalies, _APDU_TYPES[ptype])
            invoke, reason = data[pos + 1], data[pos + 2]
            ev["bacnet.apdu.invoke_id"] = invoke
            server = ptype == 6 or bool(b0 & 1)
            if ptype == 6:
                ev["bacnet.reject_reason_code"] = reason
                ev["bacnet.reject_reason"] = _REJECT_REASONS[reason]
                status = f"reject:{_REJECT_REASONS[reason]}"
            else:
                ev["bacnet.apdu.server"] = server
                ev["bacnet.abort_reason_code"] = reason
                ev["bacnet.abort_reason"] = _ABORT_REASONS[reason]
                status = f"abort:{_ABORT_REASONS[reason]}"
            ev["event.action"] = ev["ics.function"] = _APDU_TYPES[ptype]
            ev["ics.operation"] = "other"
            if size != 3:
                anomalies.append("apdu-length-invalid")
            if server:
                ev["ics.role"] = "response"
                self._respond(ev, ts, (invoke, not to_server, daddr, saddr), -1, status, anomalies)
            else:  # the client abandons its own transaction
                ev["ics.role"] = "request"
                ev["ics.status"] = status
                self._pending.pop((invoke, to_server, saddr, daddr), None)
        else:
            ev["event.action"] = ev["ics.function"] = _APDU_TYPES[ptype]
            ev["ics.operation"] = "other"
            anomalies.append("reserved-apdu-type")
        return None

    @staticmethod
    def _short(ev: Event, anomalies: list[str], name: str) -> None:
        """An APDU cut short: its type is all there is to name it by."""
        ev["event.action"] = ev["ics.function"] = name
        ev["ics.operation"] = "other"
        if name.endswith("request"):
            ev["ics.role"] = "request"
        elif name != "segment_ack" and name != "abort":
            ev["ics.role"] = "response"
        anomalies.append("apdu-truncated")

    @staticmethod
    def _answer(ev: Event, name: str, operation: str) -> None:
        ev["bacnet.service"] = ev["event.action"] = ev["ics.function"] = name
        ev["ics.operation"] = operation
        ev["ics.role"] = "response"

    def _confirmed(self, data: bytes, pos: int, end: int, ev: Event, to_server: bool, ts: float,
                   anomalies: list[str], broadcast: bool, saddr: bytes, daddr: bytes) -> None:
        b0 = data[pos]
        segmented = bool(b0 & 8)
        header = 6 if segmented else 4
        if end - pos < header:
            return self._short(ev, anomalies, "confirmed_request")
        b1, invoke = data[pos + 1], data[pos + 2]
        service = data[pos + header - 1]
        name = _CONFIRMED_NAMES[service]
        ev["bacnet.apdu.invoke_id"] = invoke
        ev["bacnet.apdu.segmented_response_accepted"] = b0 & 2 == 2
        ev["bacnet.apdu.max_segments"] = _MAX_SEGMENTS[(b1 >> 4) & 7]
        code = b1 & 15
        if code < 6:
            ev["bacnet.apdu.max_apdu"] = _MAX_APDU[code]
        else:
            anomalies.append("invalid-max-apdu")
        if segmented:
            ev["bacnet.apdu.segmented"] = True
            ev["bacnet.apdu.more_follows"] = b0 & 4 == 4
            ev["bacnet.apdu.sequence_number"] = data[pos + 3]
            ev["bacnet.apdu.window_size"] = data[pos + 4]
        ev["bacnet.confirmed_service_code"] = service
        ev["bacnet.service"] = ev["event.action"] = ev["ics.function"] = name
        ev["ics.operation"] = _CONFIRMED_OP[service]
        ev["ics.role"] = "request"
        if broadcast:
            anomalies.append("confirmed-request-broadcast")
        key = (invoke, to_server, saddr, daddr)
        body, body_end = data, end
        start = pos + header
        if segmented:
            whole = self._segment(data, pos, start, end, ev, (*key, 0), service, ts, anomalies)
            if whole is None:
                return None
            body, start, body_end = whole, 0, len(whole)
        grammar = _CONFIRMED.get(service, _GENERIC)
        if service == 12 and _fast_read_property(body, start, body_end, ev, False):
            pass
        elif body_end > start or grammar is not _GENERIC:
            reason = _decode_service(body, start, body_end, grammar, ev)
            if reason:
                anomalies.append(reason)
        if service == 20:
            state = ev.get("bacnet.reinitialized_state")
            if state in _REINIT_OPS:
                ev["ics.operation"] = _REINIT_OPS[state]
        self._remember(key, ts, ev)
        return None

    def _complex_ack(self, data: bytes, pos: int, end: int, ev: Event, to_server: bool, ts: float,
                     anomalies: list[str], saddr: bytes, daddr: bytes) -> None:
        b0 = data[pos]
        segmented = bool(b0 & 8)
        header = 5 if segmented else 3
        if end - pos < header:
            return self._short(ev, anomalies, "complex_ack")
        invoke = data[pos + 1]
        ev["bacnet.apdu.invoke_id"] = invoke
        if segmented:
            ev["bacnet.apdu.segmented"] = True
            ev["bacnet.apdu.more_follows"] = b0 & 4 == 4
            ev["bacnet.apdu.sequence_number"] = data[pos + 2]
            ev["bacnet.apdu.window_size"] = data[pos + 3]
        service = data[pos + header - 1]
        ev["bacnet.confirmed_service_code"] = service
        ev["bacnet.service"] = ev["event.action"] = ev["ics.function"] = _CONFIRMED_NAMES[service]
        ev["ics.operation"] = _CONFIRMED_OP[service]
        ev["ics.role"] = "response"
        key = (invoke, not to_server, daddr, saddr)
        body, body_end = data, end
        start = pos + header
        if segmented:
            whole = self._segment(data, pos, start, end, ev, (invoke, to_server, saddr, daddr, 3), service, ts,
                                  anomalies)
            if whole is None:
                ev["ics.status"] = "ok"
                ev["event.outcome"] = "success"
                return None
            body, start, body_end = whole, 0, len(whole)
        if service != 12 or not _fast_read_property(body, start, body_end, ev, True):
            reason = _decode_service(body, start, body_end, _ACKS.get(service, _GENERIC), ev)
            if reason:
                anomalies.append(reason)
        self._respond(ev, ts, key, service, "ok", anomalies)
        return None

    @staticmethod
    def _who_is(ev: Event, anomalies: list[str]) -> None:
        low, high = ev.get("bacnet.range_low"), ev.get("bacnet.range_high")
        if (low is None) != (high is None):
            anomalies.append("who-is-half-range")
        elif low is not None and high is not None and low > high:
            anomalies.append("who-is-range-inverted")

    # -- segmentation --------------------------------------------------------------------------------

    def _segment(self, data: bytes, pos: int, start: int, end: int, ev: Event,
                 key: tuple[int, bool, bytes, bytes, int], service: int, ts: float,
                 anomalies: list[str]) -> bytes | None:
        """Add one segment; returns the whole service data when this segment completes the message."""
        self.stats["segments"] += 1
        seq = data[pos + 3] if key[4] == 0 else data[pos + 2]
        more = bool(data[pos] & 4)
        assemblies = self._assemblies
        asm = assemblies.get(key)
        if seq == 0:
            if asm is not None:
                self.stats["reassembly_failed"] += 1
            asm = _Assembly(ts, service)
            if key not in assemblies and len(assemblies) >= MAX_ASSEMBLIES:
                oldest = next(iter(assemblies))
                del assemblies[oldest]
                self.stats["assemblies_dropped"] += 1
            assemblies[key] = asm
        elif asm is None or ts - asm.started > self.timeout:
            anomalies.append("segment-without-first")
            if asm is not None:
                del assemblies[key]
            return None
        if seq != asm.expected:
            if (asm.expected - seq) & 0xFF < 128:
                return None  # a retransmitted segment already held
            anomalies.append("segment-missing")
            asm.broken = True
        if service != asm.service:
            anomalies.append("segment-service-changed")
            asm.broken = True
        if not asm.broken:
            asm.parts.append(data[start:end])
            asm.size += end - start
            asm.expected = (seq + 1) & 0xFF
            if asm.size > MAX_SEGMENTED_BYTES:
                anomalies.append("segmented-message-too-large")
                asm.broken = True
        if asm.broken:
            del assemblies[key]
            self.stats["reassembly_failed"] += 1
            return None
        if more:
            return None
        del assemblies[key]
        self.stats["reassembled"] += 1
        ev["bacnet.apdu.segments"] = len(asm.parts)
        return b"".join(asm.parts)

    # -- pairing -------------------------------------------------------------------------------------

    def _remember(self, key: PairKey, ts: float, ev: Event) -> None:
        """Keep the request until its answer; the table is in arrival order, oldest first."""
        pending = self._pending
        if key in pending:
            del pending[key]  # a reused invoke id: the newer request wins
        elif pending:
            oldest = next(iter(pending))
            if ts - pending[oldest][0] > self.timeout:
                del pending[oldest]
                self.stats["requests_timed_out"] += 1
            elif len(pending) >= self.max_outstanding:
                del pending[oldest]
                self.stats["requests_dropped"] += 1
        pending[key] = (ts, ev)

    def _respond(self, ev: Event, ts: float, key: PairKey, service: int, status: str,
                 anomalies: list[str]) -> None:
        """Status and outcome of an answer; pair it with its request (service -1: reject or abort)."""
        ev["ics.status"] = status
        ev["event.outcome"] = "success" if status == "ok" else "failure"
        entry = self._pending.pop(key, None)
        if entry is None:
            self.stats["unpaired_responses"] += 1
            return
        sent, req = entry
        if ts - sent > self.timeout:
            self.stats["requests_timed_out"] += 1
            return
        asked = req["bacnet.confirmed_service_code"]
        if service >= 0 and asked != service:
            self.stats["unpaired_responses"] += 1
            anomalies.append("service-mismatch")
            return
        self.stats["paired"] += 1
        ev["bacnet.request_time_ms"] = int(sent * 1000.0)
        ev["bacnet.response_time_ms"] = round((ts - sent) * 1000.0, 3)
        if service < 0:  # reject and abort name the refused service
            ev["bacnet.service"] = ev["event.action"] = ev["ics.function"] = req["ics.function"]
            ev["ics.operation"] = req["ics.operation"]
        elif req["ics.operation"] != ev["ics.operation"]:
            ev["ics.operation"] = req["ics.operation"]  # e.g. reinitialize-device backup states
        if "ics.tag" not in ev:  # an answer that names nothing itself names what its request did
            for field in _INHERIT:
                if field in req:
                    ev[field] = req[field]
        if status == "ok" and req["bacnet.service"] in _WRITES:
            for field in _INHERIT_WRITTEN:
                if field not in ev and field in req:
                    ev[field] = req[field]


# -- detection ----------------------------------------------------------------------------------------


def probe(payload: bytes, to_server: bool) -> bool:
    """One BVLC message: type 0x81/0x82 with a standard function; management functions must have their
    exact size (length field and datagram); NPDU carriers need NPDU version 1, the reserved control bits
    clear, addresses that fit, and an APDU type that exists. Their length field may disagree with the
    datagram (an anomaly the session reports; Wireshark decodes such datagrams too)."""
    n = len(payload)
    if n < 4 or payload[0] not in (0x81, 0x82) or (payload[2] << 8) | payload[3] < 4:
        return False
    function = payload[1]
    ipv4 = payload[0] == 0x81
    if function > 0x0C:
        return False
    fixed = (_FIXED4 if ipv4 else _FIXED6).get(function)
    if fixed is not None:
        return n == fixed == (payload[2] << 8) | payload[3]
    npdu = (_NPDU_AT4 if ipv4 else _NPDU_AT6)[function]
    if not npdu:
        return (ipv4 and function in (0x01, 0x03, 0x07) and (n - 4) % 10 == 0
                and (payload[2] << 8) | payload[3] == n)
    if n < npdu + 3 or payload[npdu] != 1 or payload[npdu + 1] & 0x50:
        return False
    if payload[npdu + 1] & 0x80:
        return True
    control = payload[npdu + 1]
    pos = npdu + 2
    if control & 0x20:
        if pos + 3 > n:
            return False
        pos += 3 + payload[pos + 2]
    if control & 0x08:
        if pos + 3 > n:
            return False
        pos += 3 + payload[pos + 2]
    if control & 0x20:
        pos += 1
    return pos < n and payload[pos] >> 4 < 8


# -- registration -------------------------------------------------------------------------------------


def _fields() -> tuple[Field, ...]:
    F = Field
    return (
        F("bacnet.bvlc.type", "short", "BVLC type 130 (0x82): present on BACnet/IPv6 messages only (BACnet/IPv4"
          " is type 0x81)."),
        F("bacnet.bvlc.function_code", "short", "BVLC function code."),
        F("bacnet.bvlc.function", "keyword", "BVLC function name, e.g. `original_unicast_npdu`,"
          " `register_foreign_device`; `unknown-<n>` outside the standard."),
        F("bacnet.bvlc.length", "integer", "BVLC length field, present when it disagrees with the datagram's"
          " size (anomaly `bvlc-length-mismatch`)."),
        F("bacnet.bvlc.result_code", "integer", "BVLC-Result code (0 success, 0x10..0x60 NAKs)."),
        F("bacnet.bvlc.result", "keyword", "BVLC-Result name, e.g. `register_foreign_device_nak`."),
        F("bacnet.bvlc.original_source_ip", "ip", "Forwarded-NPDU: address of the device that originally sent"
          " the broadcast (the BBMD relays it)."),
        F("bacnet.bvlc.original_source_port", "integer", "Forwarded-NPDU: UDP port of the original source."),
        F("bacnet.bvlc.ttl", "integer", "Register-Foreign-Device: time to live requested, seconds."),
        F("bacnet.bvlc.entries", "object", "Broadcast distribution table entries (ip, port, mask), foreign"
          " device table entries (ip, port, ttl, remaining) or the entry to delete (ip, port); at most 64.",
          array=True),
        F("bacnet.bvlc.entry_count", "integer", "Number of table entries in the message."),
        F("bacnet.bvlc.virtual_source", "integer", "BACnet/IPv6: 3-octet virtual MAC address of the source."),
        F("bacnet.bvlc.virtual_destination", "integer", "BACnet/IPv6: virtual MAC address of the destination."),
        F("bacnet.npdu.version", "short", "NPDU protocol version (1)."),
        F("bacnet.npdu.control", "short", "NPDU control octet as sent."),
        F("bacnet.npdu.expecting_reply", "boolean", "NPDU control: the sender expects a reply."),
        F("bacnet.npdu.priority", "keyword", "NPDU network priority: `normal`, `urgent`, `critical_equipment`,"
          " `life_safety`."),
        F("bacnet.npdu.dnet", "integer", "Destination network number (65535: all networks)."),
        F("bacnet.npdu.dlen", "short", "Destination MAC address length (0: broadcast on DNET)."),
        F("bacnet.npdu.dadr", "keyword", "Destination MAC address: one octet (MS/TP) in decimal, else hex."),
        F("bacnet.npdu.snet", "integer", "Source network number (set by the router that forwarded the message)."),
        F("bacnet.npdu.slen", "short", "Source MAC address length."),
        F("bacnet.npdu.sadr", "keyword", "Source MAC address: one octet (MS/TP) in decimal, else hex."),
        F("bacnet.npdu.hop_count", "short", "Hop count of a message with a destination network."),
        F("bacnet.npdu.message_type_code", "short", "Network-layer message type."),
        F("bacnet.npdu.message_type", "keyword", "Network-layer message name, e.g. `who_is_router_to_network`;"
          " `proprietary-<n>` from 128."),
        F("bacnet.npdu.vendor_id", "integer", "Vendor of a proprietary network-layer message."),
        F("bacnet.npdu.networks", "integer", "Network numbers a network-layer message names (routers'"
          " reachable networks, the DNET asked for or rejected).", array=True),
        F("bacnet.npdu.performance_index", "short", "I-Could-Be-Router-To-Network performance index."),
        F("bacnet.npdu.termination_time", "short", "Establish-Connection-To-Network termination time, seconds."),
        F("bacnet.npdu.reject_reason_code", "short", "Reject-Message-To-Network reason code."),
        F("bacnet.npdu.reject_reason", "keyword", "Reject-Message-To-Network reason, e.g. `router-busy`."),
        F("bacnet.npdu.routing_table", "object", "Initialize-Routing-Table(-Ack) entries: dnet, port_id,"
          " port_info (hex); at most 64.", array=True),
        F("bacnet.npdu.routing_table_count", "short", "Number of routing table entries declared."),
        F("bacnet.npdu.network_number_status", "keyword", "Network-Number-Is: `learned` or `configured`."),
        F("bacnet.apdu.type_code", "short", "APDU type (0 confirmed request ... 7 abort)."),
        F("bacnet.apdu.type", "keyword", "APDU type name: `confirmed_request`, `unconfirmed_request`,"
          " `simple_ack`, `complex_ack`, `segment_ack`, `error`, `reject`, `abort`."),
        F("bacnet.apdu.invoke_id", "short", "Invoke id that pairs a confirmed request with its answer."),
        F("bacnet.apdu.segmented", "boolean", "The message is one segment of a segmented message (present"
          " only then)."),
        F("bacnet.apdu.more_follows", "boolean", "Segmented messages: more segments follow this one."),
        F("bacnet.apdu.segmented_response_accepted", "boolean", "Confirmed request: the client accepts a"
          " segmented answer."),
        F("bacnet.apdu.max_segments", "short", "Confirmed request: segments accepted in the answer (0"
          " unspecified, 65 more than 64)."),
        F("bacnet.apdu.max_apdu", "integer", "Confirmed request: largest APDU accepted, octets."),
        F("bacnet.apdu.sequence_number", "short", "Segment sequence number (segmented messages, segment acks)."),
        F("bacnet.apdu.window_size", "short", "Proposed or actual window size (segmented messages, segment acks)."),
        F("bacnet.apdu.segments", "short", "Last segment of a reassembled message: how many segments it had"
          " (its event carries the decoded service)."),
        F("bacnet.apdu.nak", "boolean", "Segment-ACK: negative acknowledgement (a segment was lost)."),
        F("bacnet.apdu.server", "boolean", "Segment-ACK and Abort: sent by the server (SRV bit)."),
        F("bacnet.confirmed_service_code", "short", "Confirmed service choice (requests, acks, errors)."),
        F("bacnet.unconfirmed_service_code", "short", "Unconfirmed service choice."),
        F("bacnet.service", "keyword", "Service name in snake_case, e.g. `read_property`, `i_am`;"
          " `unknown-<n>` outside the standard. Rejects and aborts name the refused request's service."),
        F("bacnet.object", "keyword", "The object the service addresses, `type:instance` (e.g."
          " `analog-input:3`; I-Am: the device)."),
        F("bacnet.object_type", "keyword", "Type name of `bacnet.object` (`proprietary-<n>` from 128)."),
        F("bacnet.object_instance", "long", "Instance number of `bacnet.object`."),
        F("bacnet.object_type_codes", "integer", "Types of every object identifier in the message, addressed"
          " or carried as a value, in order (at most 1024; a CreateObject by type alone names no"
          " identifier).", array=True),
        F("bacnet.object_instances", "long", "Instances of those object identifiers, in the same order.",
          array=True),
        F("bacnet.device_instance", "long", "Device instance the message names: I-Am/I-Have/You-Are device,"
          " initiating device of notifications, source device of text messages."),
        F("bacnet.property", "keyword", "First property identifier the message names, e.g. `present-value`"
          " (`proprietary-<n>` from 512)."),
        F("bacnet.property_ids", "long", "Every property identifier the message names, in order (at most"
          " 1024).", array=True),
        F("bacnet.properties", "keyword", "Names of those property identifiers.", array=True),
        F("bacnet.array_index", "long", "Array index of the first property, when given."),
        F("bacnet.values", "keyword", "Application-tagged values carried (property values, parameters), as"
          " text: numbers, `true`/`false`, `null`, strings, `type:instance`, dates `YYYY-MM-DD`, times"
          " `HH:MM:SS.hh` (`*` unspecified), bit strings as 0/1, octet strings in hex; at most 64.",
          array=True),
        F("bacnet.truncated", "long", "List items (values, identifiers, tags, table entries) left out of this"
          " event by the caps."),
        F("bacnet.priority", "short", "Write priority (1..16) of WriteProperty(Multiple)/WriteGroup, or the"
          " priority of an event notification."),
        F("bacnet.error_class_code", "integer", "Error classes the message reports: the Error PDU's, or one per"
          " failed property of a ReadPropertyMultiple ack.", array=True),
        F("bacnet.error_class", "keyword", "Names of those error classes: `device`, `object`, `property`,"
          " `resources`, `security`, `services`, `vt`, `communication`.", array=True),
        F("bacnet.error_code", "integer", "Error codes, in the same order.", array=True),
        F("bacnet.error", "keyword", "Error code names, e.g. `unknown-object`, `password-failure` (an Error"
          " PDU's first one is also its `ics.status`).", array=True),
        F("bacnet.error_offset", "long", "Offset in the service data where tag decoding failed (anomaly"
          " `tag-truncated`, `tag-overruns-data`)."),
        F("bacnet.first_failed_element", "long", "CreateObject/Add-/RemoveListElement error: first element"
          " that failed."),
        F("bacnet.reject_reason_code", "short", "Reject PDU reason code."),
        F("bacnet.reject_reason", "keyword", "Reject reason, e.g. `unrecognized-service`."),
        F("bacnet.abort_reason_code", "short", "Abort PDU reason code."),
        F("bacnet.abort_reason", "keyword", "Abort reason, e.g. `segmentation-not-supported`."),
        F("bacnet.range_low", "long", "Who-Is/Who-Has: low limit of the device instance range."),
        F("bacnet.range_high", "long", "Who-Is/Who-Has: high limit of the device instance range."),
        F("bacnet.object_name", "keyword", "Who-Has/I-Have: object name."),
        F("bacnet.max_apdu_accepted", "integer", "I-Am: largest APDU the device accepts, octets."),
        F("bacnet.segmentation", "keyword", "I-Am: segmentation supported (`segmented-both`,"
          " `segmented-transmit`, `segmented-receive`, `no-segmentation`)."),
        F("bacnet.vendor_id", "integer", "Vendor identifier (I-Am, Who-Am-I/You-Are, private transfer)."),
        F("bacnet.vendor", "keyword", "Vendor name for common vendor identifiers, else `unknown-<id>`."),
        F("bacnet.model_name", "keyword", "Who-Am-I/You-Are: model name."),
        F("bacnet.serial_number", "keyword", "Who-Am-I/You-Are: serial number."),
        F("bacnet.mac_address", "keyword", "You-Are: MAC address assigned, hex."),
        F("bacnet.time", "keyword", "Time sent: TimeSynchronization/UTCTimeSynchronization date and time"
          " `YYYY-MM-DDTHH:MM:SS.hh` as the device is told (`*` unspecified), ReadRange by-time reference."),
        F("bacnet.duration_minutes", "long", "DeviceCommunicationControl: minutes the state lasts (absent:"
          " indefinitely)."),
        F("bacnet.enable_disable", "keyword", "DeviceCommunicationControl: `enable`, `disable`,"
          " `disable-initiation`."),
        F("bacnet.reinitialized_state", "keyword", "ReinitializeDevice: `coldstart`, `warmstart`,"
          " `start-backup`, `end-backup`, `start-restore`, `end-restore`, `abort-restore`,"
          " `activate-changes`."),
        F("bacnet.password_present", "boolean", "DeviceCommunicationControl/ReinitializeDevice carried a"
          " password (its characters are never recorded)."),
        F("bacnet.file_access", "keyword", "AtomicRead/WriteFile access method: `stream` or `record`."),
        F("bacnet.file_start", "long", "AtomicRead/WriteFile: start position (stream) or start record."),
        F("bacnet.file_count", "long", "AtomicReadFile request: octets or records asked for;"
          " record-access write: records written."),
        F("bacnet.file_data_length", "long", "Octets of file data carried (read ack, write request)."),
        F("bacnet.end_of_file", "boolean", "AtomicReadFile ack: the end of the file was reached."),
        F("bacnet.process_id", "long", "Subscriber/acknowledging process identifier (COV, events, alarms)."),
        F("bacnet.issue_confirmed", "boolean", "SubscribeCOV*: notifications are to be confirmed."),
        F("bacnet.lifetime", "long", "SubscribeCOV*: subscription lifetime, seconds (absent: cancellation"
          " or indefinite)."),
        F("bacnet.cov_increment", "float", "SubscribeCOVProperty: COV increment."),
        F("bacnet.max_notification_delay", "long", "SubscribeCOVPropertyMultiple: maximum delay, seconds."),
        F("bacnet.time_remaining", "long", "COV notification: seconds left in the subscription."),
        F("bacnet.notification_class", "long", "Event notification class."),
        F("bacnet.event_type", "keyword", "Event notification type, e.g. `out-of-range`."),
        F("bacnet.notify_type", "keyword", "Event notification: `alarm`, `event`, `ack-notification`."),
        F("bacnet.ack_required", "boolean", "Event notification: acknowledgement required."),
        F("bacnet.from_state", "keyword", "Event notification: previous event state."),
        F("bacnet.to_state", "keyword", "Event notification: new event state; AcknowledgeAlarm: the state"
          " acknowledged."),
        F("bacnet.message_text", "keyword", "Event notification or text message text."),
        F("bacnet.message_priority", "keyword", "Text message priority: `normal` or `urgent`."),
        F("bacnet.acknowledgment_source", "keyword", "AcknowledgeAlarm: who acknowledged."),
        F("bacnet.requesting_source", "keyword", "LifeSafetyOperation: who requested it."),
        F("bacnet.life_safety_request", "keyword", "LifeSafetyOperation request, e.g. `silence`, `reset`."),
        F("bacnet.service_number", "long", "Private transfer: vendor's service number."),
        F("bacnet.range_type", "keyword", "ReadRange: `by-position`, `by-sequence-number`, `by-time`."),
        F("bacnet.range_reference", "long", "ReadRange: reference index or sequence number."),
        F("bacnet.range_count", "long", "ReadRange: items asked for (negative: before the reference)."),
        F("bacnet.result_flags", "keyword", "ReadRange ack: first-item, last-item, more-items bits."),
        F("bacnet.item_count", "long", "ReadRange ack: items returned."),
        F("bacnet.first_sequence_number", "long", "ReadRange ack: sequence number of the first item."),
        F("bacnet.more_events", "boolean", "GetEventInformation ack: more events to fetch."),
        F("bacnet.group_number", "long", "WriteGroup: control group number."),
        F("bacnet.inhibit_write", "boolean", "WriteGroup: inhibit writing."),
        F("bacnet.vt_class", "long", "VT-Open: virtual terminal class."),
        F("bacnet.vt_session", "long", "VT-Open: session identifier."),
        F("bacnet.request_time_ms", "date", "Answers: capture time of the paired request (epoch"
          " milliseconds)."),
        F("bacnet.response_time_ms", "double", "Answers: milliseconds between the paired request and this"
          " answer."),
        F("bacnet.anomaly", "keyword", "Why the message breaks the specification although it frames as BVLC"
          " (see sensor/protocols/bacnet.md).", array=True),
    )


DISSECTOR = Dissector(
    name="bacnet",
    description="BACnet/IP (BVLC, NPDU and APDU). Answers (acks, errors, rejects, aborts) keep the service"
    " name and operation of their request, with `ics.status` set to the error code or"
    " `reject:`/`abort:` reason. Rows written `reinitialize_device/<state>` override the service's"
    " operation for that reinitialized state; BVLC and network-layer message names are listed too.",
    tcp_ports=frozenset(),
    udp_ports=frozenset({PORT}),
    probe=probe,
    new_session=BacnetSession,
    fields=_fields(),
    operations=OPERATIONS,
    wireshark=WiresharkFields(
        display_filter="bvlc",
        fields={
            "bacnet.bvlc.function_code": "bvlc.function",
            "bacnet.bvlc.result_code": "bvlc.result",
            "bacnet.bvlc.original_source_ip": "bvlc.fwd_ip",
            "bacnet.bvlc.ttl": "bvlc.reg_ttl",
            "bacnet.npdu.control": "bacnet.control",
            "bacnet.npdu.dnet": "bacnet.dnet",
            "bacnet.npdu.snet": "bacnet.snet",
            "bacnet.npdu.hop_count": "bacnet.hopc",
            "bacnet.npdu.message_type_code": "bacnet.mesgtyp",
            "bacnet.apdu.type_code": "bacapp.type",
            "bacnet.apdu.invoke_id": "bacapp.invoke_id",
            "bacnet.apdu.sequence_number": "bacapp.sequence_number",
            "bacnet.confirmed_service_code": "bacapp.confirmed_service",
            "bacnet.unconfirmed_service_code": "bacapp.unconfirmed_service",
            "bacnet.object_type_codes": "bacapp.objectType",
            "bacnet.object_instances": "bacapp.instance_number",
            "bacnet.property_ids": "bacapp.property_identifier",
            "bacnet.vendor_id": "bacapp.vendor_identifier",
            "bacnet.error_class_code": "bacapp.error_class",
            "bacnet.error_code": "bacapp.error_code",
            "bacnet.reject_reason_code": "bacapp.reject_reason",
            "bacnet.abort_reason_code": "bacapp.abort_reason",
            "bacnet.range_low": "bacapp.who_is.low_limit",
            "bacnet.range_high": "bacapp.who_is.high_limit",
        },
        decode_as="bvlc",
    ),
)
