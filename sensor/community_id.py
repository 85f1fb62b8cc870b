"""Community ID v1 flow hashing, so icsmon flows join with Zeek's and Suricata's.

The hash input is: seed (16 bits), the two addresses, the IP protocol, one
zero pad byte, then the two ports, with the endpoints ordered so that the
smaller (address, port) comes first. ICMP uses type and code as the ports,
and message types that have a reply counterpart are mapped onto it so both
directions of an exchange hash alike. The other ICMP messages are one-way:
their endpoints are hashed as sent, never reordered (the specification's
reference implementation, Zeek and Wireshark agree on this), so a
destination-unreachable from A to B and one from B to A are different flows.
"""

from __future__ import annotations

import base64
import hashlib
import struct

__all__ = ["community_id"]

_PORTS = struct.Struct("!HH")

# ICMP request/reply pairs: type -> counterpart type.
_ICMP4_PAIRS = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
# ICMPv6: echo, router and neighbour discovery, MLD query/report, node information (who-are-you)
# query/reply, home agent address discovery.
_ICMP6_PAIRS = {128: 129, 129: 128, 133: 134, 134: 133, 135: 136, 136: 135, 130: 131, 131: 130,
                139: 140, 140: 139, 144: 145, 145: 144}


def community_id(src: bytes, dst: bytes, proto: int, sport: int, dport: int, seed: int = 0) -> str:
    """Community ID of a flow from raw addresses (4 or 16 bytes) and ports."""
    one_way = False
    if proto in (1, 58):
        pairs = _ICMP4_PAIRS if proto == 1 else _ICMP6_PAIRS
        icmp_type, code = sport, dport
        if icmp_type in pairs:
            sport, dport = icmp_type, pairs[icmp_type]
        else:
            sport, dport, one_way = icmp_type, code, True
    if not one_way and (src, sport) > (dst, dport):
        src, dst, sport, dport = dst, src, dport, sport
    data = struct.pack("!H", seed) + src + dst + bytes((proto, 0)) + _PORTS.pack(sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")
