"""Link, network and transport decoding: frame bytes -> one flat tuple.

This is the sensor's per-packet path, so it is one function with the common
case (Ethernet, IPv4, TCP/UDP) written straight through, and helpers only for
the rarer layers. Nothing here raises on hostile bytes: a frame that cannot
be decoded increments ``errors[reason]`` and yields ``None``. Frames that are
fine but not IP (ARP, PROFINET, GOOSE, LLDP...) increment ``counters``.

The result, :data:`Decoded`, is ``(proto, key, payload, flags, seq, ack)``:

* ``proto`` -- IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6);
* ``key`` -- the directional flow key, ``src addr + dst addr + sport + dport
  + proto byte + vlan ids`` (addresses 4 or 16 bytes), see :func:`reverse_key`
  and :func:`split_key`;
* ``payload`` -- transport payload bytes, trimmed to the IP length (so
  Ethernet padding never reaches a dissector);
* ``flags, seq, ack`` -- TCP flags and numbers (0 for other transports).

IPv4 and IPv6 fragments are reassembled by :class:`sensor.ipfrag.Defragmenter`.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address, IPv6Address

from sensor.capture import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
)
from sensor.ipfrag import Defragmenter

__all__ = ["Decoded", "decode", "reverse_key", "split_key", "link_macs"]

Decoded = tuple[int, bytes, bytes, int, int, int]

TCP, UDP, ICMP, ICMPV6 = 6, 17, 1, 58
ETH_IPV4, ETH_IPV6, ETH_ARP = 0x0800, 0x86DD, 0x0806
VLAN_TPIDS = frozenset((0x8100, 0x88A8, 0x9100))
MAX_VLAN_TAGS = 4

_U16 = struct.Struct("!H")
_IPV4 = struct.Struct("!BxHHHBB")  # ver/ihl, total length, id, flags/frag, ttl, proto
_IPV6 = struct.Struct("!HBB")  # payload length, next header, hop limit (at offset 4)
_TCP = struct.Struct("!HHIIBB")  # sport, dport, seq, ack, data offset, flags
_SLL2_PROTO = struct.Struct("!H")
_NULL_LE = struct.Struct("<I")
_NULL_BE = struct.Struct("!I")
_FRAG6 = struct.Struct("!BxHI")  # next header, offset/flags, identification

# IPv6 extension headers that are walked to reach the transport header.
_IPV6_EXT = frozenset((0, 43, 60, 135, 139, 140))  # hop-by-hop, routing, dst opts, mobility, HIP, shim6
_IPV6_FRAGMENT, _IPV6_AH = 44, 51
# BSD loopback address-family values for IPv6 differ per OS.
_NULL_IPV6 = frozenset((24, 28, 30))


def _bump(counter: dict[str, int], reason: str) -> None:
    counter[reason] = counter.get(reason, 0) + 1


def decode(
    linktype: int,
    frame: bytes,
    ts: float,
    errors: dict[str, int],
    counters: dict[str, int],
    defrag: Defragmenter,
) -> Decoded | None:
    """Decode one frame down to the transport layer (see the module docstring)."""
    vlan = b""
    if linktype == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            _bump(errors, "ethernet-truncated")
            return None
        ethertype = (frame[12] << 8) | frame[13]
        off = 14
    else:
        link = _decode_other_link(linktype, frame, errors)
        if link is None:
            return None
        ethertype, off = link
    if ethertype in VLAN_TPIDS:
        # 802.1Q/802.1ad tags (Ethernet, or Linux cooked captures that kept the tag in the frame).
        tags = 0
        while ethertype in VLAN_TPIDS:
            if len(frame) < off + 4 or tags == MAX_VLAN_TAGS:
                _bump(errors, "vlan-truncated" if tags < MAX_VLAN_TAGS else "vlan-too-many-tags")
                return None
            vlan += bytes((frame[off] & 0x0F, frame[off + 1]))
            ethertype = (frame[off + 2] << 8) | frame[off + 3]
            off += 4
            tags += 1

    if ethertype == ETH_IPV4:
        if len(frame) < off + 20:
            _bump(errors, "ipv4-truncated")
            return None
        verihl, total, ident, frag, _ttl, proto = _IPV4.unpack_from(frame, off)
        ihl = (verihl & 0x0F) << 2
        if verihl >> 4 != 4 or ihl < 20:
            _bump(errors, "ipv4-bad-header")
            return None
        end = off + total
        if total < ihl:
            _bump(errors, "ipv4-bad-length")
            return None
        if end > len(frame):
            _bump(errors, "ipv4-truncated")
            return None
        addrs = frame[off + 12:off + 20]
        l4 = off + ihl
        if frag & 0x3FFF:  # more-fragments set or non-zero offset
            whole = defrag.add(
                addrs + bytes((proto,)) + _U16.pack(ident) + vlan,
                (frag & 0x1FFF) << 3, bool(frag & 0x2000), frame[l4:end], ts,
            )
            if whole is None:
                return None
            frame, l4, end = whole, 0, len(whole)
    elif ethertype == ETH_IPV6:
        ip6 = _decode_ipv6(frame, off, ts, errors, defrag, vlan)
        if ip6 is None:
            return None
        proto, addrs, frame, l4, end = ip6
    elif ethertype == ETH_ARP:
        _bump(counters, "arp")
        return None
    else:
        _bump(counters, "non-ip")
        return None

    if proto == TCP:
        if end - l4 < 20:
            _bump(errors, "tcp-truncated")
            return None
        sport, dport, seq, ack, doff, flags = _TCP.unpack_from(frame, l4)
        hlen = (doff >> 4) << 2
        if hlen < 20 or l4 + hlen > end:
            _bump(errors, "tcp-bad-header-length")
            return None
        return (TCP, addrs + frame[l4:l4 + 4] + b"\x06" + vlan, frame[l4 + hlen:end], flags, seq, ack)
    if proto == UDP:
        if end - l4 < 8:
            _bump(errors, "udp-truncated")
            return None
        ulen = (frame[l4 + 4] << 8) | frame[l4 + 5]
        if ulen < 8 or l4 + ulen > end:
            _bump(errors, "udp-bad-length")
            return None
        return (UDP, addrs + frame[l4:l4 + 4] + b"\x11" + vlan, frame[l4 + 8:l4 + ulen], 0, 0, 0)
    if proto == ICMP or proto == ICMPV6:
        if end - l4 < 4:
            _bump(errors, "icmp-truncated")
            return None
        # All ICMP between two hosts is one flow; the payload keeps type and code.
        return (proto, addrs + b"\0\0\0\0" + bytes((proto,)) + vlan, frame[l4:end], 0, 0, 0)
    _bump(counters, f"ip-proto-{proto}")
    return None


def _decode_other_link(linktype: int, frame: bytes, errors: dict[str, int]) -> tuple[int, int] | None:
    """Return (ethertype, offset of the network header) for the non-Ethernet link types."""
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not frame:
            _bump(errors, "raw-empty")
            return None
        version = frame[0] >> 4
        if version == 4:
            return ETH_IPV4, 0
        if version == 6:
            return ETH_IPV6, 0
        _bump(errors, "raw-bad-ip-version")
        return None
    if linktype == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            _bump(errors, "sll-truncated")
            return None
        return _U16.unpack_from(frame, 14)[0], 16
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            _bump(errors, "sll2-truncated")
            return None
        return _SLL2_PROTO.unpack_from(frame, 0)[0], 20
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(frame) < 4:
            _bump(errors, "null-truncated")
            return None
        # NULL is in the capturing host's byte order; LOOP is always big-endian.
        family = _NULL_BE.unpack_from(frame, 0)[0]
        if linktype == LINKTYPE_NULL and family > 0xFFFF:
            family = _NULL_LE.unpack_from(frame, 0)[0]
        if family == 2:
            return ETH_IPV4, 4
        if family in _NULL_IPV6:
            return ETH_IPV6, 4
        _bump(errors, "null-unknown-family")
        return None
    _bump(errors, f"unsupported-linktype-{linktype}")
    return None


def _decode_ipv6(
    frame: bytes, off: int, ts: float, errors: dict[str, int], defrag: Defragmenter, vlan: bytes
) -> tuple[int, bytes, bytes, int, int] | None:
    """Walk the IPv6 header chain; return (proto, addrs, frame, l4 offset, end)."""
    if len(frame) < off + 40:
        _bump(errors, "ipv6-truncated")
        return None
    if frame[off] >> 4 != 6:
        _bump(errors, "ipv6-bad-version")
        return None
    plen, nxt, _hops = _IPV6.unpack_from(frame, off + 4)
    end = off + 40 + plen
    if end > len(frame):
        _bump(errors, "ipv6-truncated")
        return None
    addrs = frame[off + 8:off + 40]
    pos = off + 40
    reassembled = False
    for _ in range(16):  # bounded walk: no header chain is legitimately longer
        if nxt in _IPV6_EXT or nxt == _IPV6_AH:
            if pos + 2 > end:
                _bump(errors, "ipv6-ext-truncated")
                return None
            hlen = (frame[pos + 1] + 2) << 2 if nxt == _IPV6_AH else (frame[pos + 1] + 1) << 3
            nxt = frame[pos]
            pos += hlen
            if pos > end:
                _bump(errors, "ipv6-ext-truncated")
                return None
            continue
        if nxt == _IPV6_FRAGMENT:
            if pos + 8 > end:
                _bump(errors, "ipv6-ext-truncated")
                return None
            if reassembled:
                _bump(errors, "ipv6-nested-fragment")
                return None
            inner, offflags, ident = _FRAG6.unpack_from(frame, pos)
            whole = defrag.add(
                addrs + bytes((inner,)) + ident.to_bytes(4, "big") + vlan,
                offflags & 0xFFF8, bool(offflags & 1), frame[pos + 8:end], ts,
            )
            if whole is None:
                return None
            # Extension headers after the fragment header (destination options, routing...)
            # belong to the fragmentable part: keep walking inside the reassembled payload.
            frame, pos, end, nxt, reassembled = whole, 0, len(whole), inner, True
            continue
        return nxt, addrs, frame, pos, end
    _bump(errors, "ipv6-ext-chain-too-long")
    return None


def reverse_key(key: bytes) -> bytes:
    """The flow key of the opposite direction."""
    a = 16 if len(key) >= _V6_KEY_LEN else 4
    return key[a:2 * a] + key[:a] + key[2 * a + 2:2 * a + 4] + key[2 * a:2 * a + 2] + key[2 * a + 4:]


# An IPv4 key is 13 bytes plus 2 per VLAN tag (at most MAX_VLAN_TAGS), an IPv6 key 37 plus 2 per tag.
_V6_KEY_LEN = 37


def split_key(key: bytes) -> tuple[str, str, int, int, int, tuple[int, ...], str]:
    """Unpack a flow key into printable endpoints (called once per flow)."""
    v6 = len(key) >= _V6_KEY_LEN
    a = 16 if v6 else 4
    src = key[:a]
    dst = key[a:2 * a]
    sport = (key[2 * a] << 8) | key[2 * a + 1]
    dport = (key[2 * a + 2] << 8) | key[2 * a + 3]
    proto = key[2 * a + 4]
    rest = key[2 * a + 5:]
    vlans = tuple((rest[i] << 8) | rest[i + 1] for i in range(0, len(rest) - 1, 2))
    if v6:
        return str(IPv6Address(src)), str(IPv6Address(dst)), sport, dport, proto, vlans, "ipv6"
    return str(IPv4Address(src)), str(IPv4Address(dst)), sport, dport, proto, vlans, "ipv4"


def link_macs(linktype: int, frame: bytes) -> tuple[str | None, str | None]:
    """(source MAC, destination MAC) of an Ethernet frame; (None, None) otherwise."""
    if linktype != LINKTYPE_ETHERNET or len(frame) < 12:
        return None, None
    return _mac(frame[6:12]), _mac(frame[0:6])


def _mac(raw: bytes) -> str:
    return "-".join(f"{b:02X}" for b in raw)
