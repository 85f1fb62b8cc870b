"""Live capture from a mirror (SPAN) port: AF_PACKET, a TPACKET_V3 ring, receive only.

:class:`LiveCapture` is a :class:`~sensor.capture.PacketSource` over one
network interface. It opens a Linux packet socket bound to the interface,
asks the kernel for a memory-mapped TPACKET_V3 receive ring and walks the
ring's blocks in place; frames are copied out once, into the ``bytes`` of
the packet tuple, and each block goes back to the kernel as soon as it has
been read.

**It never transmits.** A passive monitor on a mirror port must not put a
single frame on the wire, so the sensor has no send path at all: the packet
socket is private to this class (``_sock``), no method writes to it, no
transmit ring is set up, its send buffer is set to the kernel's minimum and,
where the kernel supports it, outgoing frames are not even copied to it
(``PACKET_IGNORE_OUTGOING``). ``tests/sensor/capture/test_never_transmits.py``
checks the source for any send call and, on a real interface, that the
transmit counter stays put while the sensor runs.

Why it is written the way it is:

* **The ring is the fast path.** ``PACKET_RX_RING`` with TPACKET_V3 lets the
  kernel fill whole blocks of packets without a system call per packet; the
  loop reads each block's descriptor and packet headers with precompiled
  ``struct.Struct.unpack_from`` straight from the ``mmap``. If the ring cannot
  be set up (old kernel, no memory) the source falls back to one
  ``recvmsg`` per packet and says so in :attr:`LiveCapture.mode` and in
  ``stats().extra["tpacket_v3"]`` (0).
* **Configured before it is bound.** The socket is created with protocol 0,
  which receives nothing; ring, filter and promiscuous mode are set up first
  and only then is it bound to the interface with ``ETH_P_ALL``. So no
  packet that the filter would reject, and no packet older than the setup,
  ever reaches the reader.
* **Frames as they were on the wire.** The kernel strips the outer 802.1Q tag
  of received frames into packet metadata before packet sockets see them;
  mirror ports often carry tagged traffic, so the tag is put back from the
  ring header (or, in the fallback, from ``PACKET_AUXDATA``). Timestamps are
  the kernel's receive time (seconds and nanoseconds of the ring header).
* **Stopping.** :meth:`LiveCapture.stop` may be called from another thread
  or a signal handler: it sets a flag and wakes the poller through an
  eventfd. The iterator then hands out what the kernel already holds (it
  waits for the partly filled block to be retired, a few milliseconds) and
  ends once the ring is empty, or :data:`STOP_DRAIN_SECONDS` after the
  call (checked between blocks, so a slow consumer adds the time it takes
  for the block in hand).
* **Losses are counted, never hidden.** ``PACKET_STATISTICS`` reports (and
  resets) the kernel's counters of packets that found the ring full; they
  are accumulated into ``stats().kernel_dropped``. Drops before the socket
  (interface ``rx_dropped`` + ``rx_fifo_errors`` since the capture started)
  go to ``interface_dropped``, and packets still in the ring when the stop
  deadline cut the drain short to ``extra["left_in_ring"]``.
* **Quiet links.** Whoever reads packets may set :attr:`LiveCapture.housekeeping`
  to a callable; the iterator calls it in the reading thread after every
  block it hands out and whenever it finds nothing to read (at least every
  :data:`POLL_MS`), so work that is due by the clock (handing on alert
  updates) is done while no packet arrives, without a second thread.
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import BinaryIO

from sensor.capture import LINKTYPE_ETHERNET, LINKTYPE_RAW, CaptureError, CaptureStats, Packet, bpf

__all__ = ["LiveCapture", "DEFAULT_RING_BYTES", "STOP_DRAIN_SECONDS", "permission_message"]

DEFAULT_RING_BYTES = 64 << 20
"""Receive ring size: at 1 Gbit/s of small frames this absorbs about half a second of stall."""

BLOCK_BYTES = 1 << 20
"""Ring block size (grown to hold one snapshot-length frame if needed)."""

BLOCK_TIMEOUT_MS = 10
"""The kernel hands over a partly filled block after this long, so quiet links still deliver promptly."""

POLL_MS = 100
"""Longest wait in one poll: a stop() that lost its wake-up is still noticed this fast."""

STOP_DRAIN_SECONDS = 0.1
"""After stop(), packets the kernel already holds are still delivered for at most this long."""

_QUIET_SECONDS = 3 * BLOCK_TIMEOUT_MS / 1000
"""While stopping: no block ready for this long means the ring is empty."""

# <linux/if_ether.h>, <linux/if_packet.h>, <asm-generic/socket.h>, <linux/sockios.h>, <net/if.h>
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
PACKET_VERSION = 10
PACKET_IGNORE_OUTGOING = 23
PACKET_MR_PROMISC = 1
PACKET_OUTGOING = 4
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 1 << 4
TP_STATUS_VLAN_TPID_VALID = 1 << 6
SO_TIMESTAMPNS = 35
SIOCGIFFLAGS = 0x8913
SIOCGIFHWADDR = 0x8927
IFF_UP = 0x1
ETH_P_8021Q = 0x8100

# Interface hardware types (ARPHRD_*) -> link type of the frames a SOCK_RAW packet socket returns.
_LINKTYPES = {
    1: LINKTYPE_ETHERNET,  # ARPHRD_ETHER
    772: LINKTYPE_ETHERNET,  # ARPHRD_LOOPBACK: Linux gives loopback frames an Ethernet header
    519: LINKTYPE_RAW,  # ARPHRD_RAWIP
    0xFFFE: LINKTYPE_RAW,  # ARPHRD_NONE (tun): bare IP packets
}

# struct tpacket_req3: block size, block count, frame size, frame count, retire timeout (ms),
# private area size, feature request word.
_REQ3 = struct.Struct("=7I")
# struct tpacket_block_desc from its block_status: block_status, num_pkts, offset_to_first_pkt.
_BLOCK = struct.Struct("=III")
_BLOCK_STATUS = struct.Struct("=I")
_BLOCK_STATUS_AT = 8
# struct tpacket3_hdr up to tp_mac: next offset, sec, nsec, snaplen, len, status, mac offset.
_TP3 = struct.Struct("=IIIIIIH")
# hv1.tp_vlan_tci, hv1.tp_vlan_tpid
_TP3_VLAN = struct.Struct("=IH")
_TP3_VLAN_AT = 32
# The struct sockaddr_ll that follows TPACKET_ALIGN(sizeof(struct tpacket3_hdr)) == 48; sll_pkttype at 10.
_TP3_PKTTYPE_AT = 48 + 10
_FRAME_BYTES = 2048  # TPACKET_V3 ignores frame slots but tpacket_req3 must describe them consistently
# struct packet_mreq: ifindex, type, address length, address.
_MREQ = struct.Struct("=iHH8s")
# struct tpacket_stats_v3: packets (drops included), drops, times the ring was full.
_STATS = struct.Struct("=III")
# struct tpacket_auxdata: status, len, snaplen, mac, net, vlan_tci, vlan_tpid.
_AUXDATA = struct.Struct("=IIIHHHH")
_TIMESPEC = struct.Struct("=qq")
_VLAN_TAG = struct.Struct(">HH")
# struct ifreq: name, then a short (ifr_flags, or the sa_family of ifr_hwaddr), padded to 40 bytes.
_IFREQ_FLAGS = struct.Struct("=16sH22x")


def permission_message(interface: str) -> str:
    return (f"capturing on {interface} needs CAP_NET_RAW and CAP_NET_ADMIN (run as root, or: setcap"
            f" cap_net_raw,cap_net_admin+eip $(readlink -f $(which python3)))")


class LiveCapture:
    """Receive-only capture on one interface (see the module docstring for the design).

    ``include_outgoing`` also reports frames this host sends on the interface
    (a mirror port has none; off by default). ``use_ring=False`` forces the
    ``recvmsg`` path that is otherwise only the fallback.
    """

    def __init__(self, interface: str, bpf_filter: str | None = None, snaplen: int = 65535,
                 promiscuous: bool = True, *, include_outgoing: bool = False,
                 ring_bytes: int = DEFAULT_RING_BYTES, use_ring: bool = True) -> None:
        if not hasattr(socket, "AF_PACKET"):
            raise CaptureError(f"capturing on {interface} needs Linux (AF_PACKET sockets)")
        if not 64 <= snaplen <= 262144:
            raise CaptureError(f"snapshot length {snaplen} for {interface} is not within 64..262144")
        self.name = interface
        self.interface = interface
        self.snaplen = snaplen
        self.bpf_filter = bpf_filter
        self.promiscuous = promiscuous
        self.include_outgoing = include_outgoing
        self.mode = "recvmsg"
        self.ring_error = "" if use_ring else "disabled"
        self.linktype = LINKTYPE_ETHERNET
        self._ifindex = _interface_index(interface)
        self._ring: mmap.mmap | None = None
        self._block_size = 0
        self._block_count = 0
        self._block = 0
        self._skip_outgoing = not include_outgoing
        self._stop_requested = False
        self._stop_deadline = 0.0
        self._closed = False
        self._backlog: list[Packet] = []
        self._received = 0
        self.housekeeping: Callable[[], None] = _nothing
        """Called in the reading thread between blocks and while no packet arrives (see the module docstring)."""
        self._kernel = [0, 0, 0]  # packets, drops, ring-full episodes; accumulated (the kernel resets)
        self._extra = {"outgoing_ignored": 0, "truncated": 0, "vlan_tags_restored": 0, "interface_down": 0,
                       "left_in_ring": 0}
        # The one socket of the sensor: a packet socket that only ever receives. Kept private on
        # purpose; this class has no method that sends or writes to it.
        self._sock = _open_packet_socket(interface)
        self._wake = -1
        self._dev_file: BinaryIO | None = None
        self._interface_base = self._interface_dropped = 0
        try:
            self._configure(bpf_filter, ring_bytes, use_ring)
            self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            self._poller = select.poll()
            self._poller.register(self._sock.fileno(), select.POLLIN)
            self._poller.register(self._wake, select.POLLIN)
            self._dev_file = _open_dev_stats()
            self._interface_base = self._interface_drops()
            # Bind last: from here on the kernel delivers packets, all set up as configured.
            self._sock.bind((interface, ETH_P_ALL))
        except OSError as exc:
            self.close()
            raise CaptureError(f"capturing on {interface}: {exc.strerror or exc}") from None
        except BaseException:
            self.close()
            raise

    # -- setup -------------------------------------------------------------------------------

    def _configure(self, bpf_filter: str | None, ring_bytes: int, use_ring: bool) -> None:
        sock, name = self._sock, self.interface
        try:
            flags = _IFREQ_FLAGS.unpack(fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS,
                                                    _IFREQ_FLAGS.pack(name.encode(), 0)))[1]
        except OSError as exc:
            raise CaptureError(f"no such interface: {name}") from exc
        if not flags & IFF_UP:
            raise CaptureError(f"interface {name} is down (bring it up first: ip link set {name} up)")
        self.linktype = self._linktype()
        code = (bpf.compile_filter(bpf_filter, self.linktype, self.snaplen) if bpf_filter
                else bpf.accept_all(self.snaplen))
        try:
            bpf.attach(sock, code)
        except OSError as exc:
            raise CaptureError(f"the kernel refused the capture filter for {name}: {exc.strerror}") from exc
        # Receive only: the smallest send buffer the kernel allows (nothing is ever queued on it).
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 0)
        if self._skip_outgoing:
            try:
                sock.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                self._skip_outgoing = False  # the kernel filters them; no per-packet check needed
            except OSError:
                pass  # kernel before 4.20: the per-packet sll_pkttype check below does it
        if use_ring:
            self._setup_ring(ring_bytes)
        if self._ring is None:
            self._setup_recvmsg(ring_bytes)
        if self.promiscuous:
            mreq = _MREQ.pack(self._ifindex, PACKET_MR_PROMISC, 0, b"")
            try:
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)  # undone by the kernel on close
            except OSError as exc:
                raise CaptureError(f"cannot put {name} in promiscuous mode: {exc.strerror}") from exc

    def _linktype(self) -> int:
        """The link type of the interface, from its ARPHRD type (asked of the socket's namespace)."""
        hatype = _hardware_type(self._sock, self.interface)
        linktype = _LINKTYPES.get(hatype)
        if linktype is None:
            raise CaptureError(f"capturing on {self.interface}: unsupported hardware type {hatype}"
                               " (Ethernet, loopback and raw IP interfaces are supported)")
        return linktype

    def _setup_ring(self, ring_bytes: int) -> None:
        """TPACKET_V3 ring; on any failure leave the socket ring-less and remember why."""
        sock = self._sock
        block = BLOCK_BYTES
        while block < self.snaplen + 4096:
            block <<= 1
        count = max(2, ring_bytes // block)
        try:
            sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, _REQ3.pack(
                block, count, _FRAME_BYTES, block // _FRAME_BYTES * count, BLOCK_TIMEOUT_MS, 0, 0))
        except OSError as exc:
            self.ring_error = f"PACKET_RX_RING: {exc.strerror}"
            return
        try:
            self._ring = mmap.mmap(sock.fileno(), block * count, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError as exc:
            self.ring_error = f"mmap: {exc.strerror}"
            sock.setsockopt(SOL_PACKET, PACKET_RX_RING, _REQ3.pack(0, 0, 0, 0, 0, 0, 0))
            return
        self._block_size, self._block_count = block, count
        self.mode = "tpacket_v3"

    def _setup_recvmsg(self, buffer_bytes: int) -> None:
        sock = self._sock
        sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        for option in (33, socket.SO_RCVBUF):  # SO_RCVBUFFORCE (CAP_NET_ADMIN), else up to rmem_max
            try:
                sock.setsockopt(socket.SOL_SOCKET, option, buffer_bytes)
                break
            except OSError:
                continue

    # -- packets -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Packet]:
        if self._stop_requested:  # stopped before reading began: the drain time starts now
            self._stop_deadline = max(self._stop_deadline, time.monotonic() + STOP_DRAIN_SECONDS)
        backlog, self._backlog = self._backlog, []
        yield from self._hand_out(backlog)
        if self._ring is not None:
            yield from self._ring_packets()
        else:
            yield from self._recv_packets()

    def _hand_out(self, batch: list[Packet]) -> Iterator[Packet]:
        """Yield a batch; if the consumer stops early, keep the rest for the next loop."""
        done = 0
        try:
            for packet in batch:
                done += 1
                yield packet
        finally:
            if done < len(batch):
                self._backlog = batch[done:] + self._backlog

    def _ring_packets(self) -> Iterator[Packet]:
        while not self._closed:
            batch = self._read_block()
            if batch is None:
                self.housekeeping()
                if not self._wait():
                    return
                continue
            self._received += len(batch)
            yield from self._hand_out(batch)
            self.housekeeping()
            if self._stop_requested and self._past_deadline():
                self._extra["left_in_ring"] += self._count_unread()
                return

    def _count_unread(self) -> int:
        """Packets in blocks the kernel handed over that nobody will read: stopped before the ring drained."""
        ring = self._ring
        assert ring is not None
        unread = 0
        for step in range(self._block_count):
            base = (self._block + step) % self._block_count * self._block_size
            status, count, _offset = _BLOCK.unpack_from(ring, base + _BLOCK_STATUS_AT)
            if not status & TP_STATUS_USER:
                break
            unread += count
        return unread

    def _read_block(self) -> list[Packet] | None:
        """The packets of the next block if the kernel has handed it over, else None."""
        ring = self._ring
        assert ring is not None
        base = self._block * self._block_size
        status, count, offset = _BLOCK.unpack_from(ring, base + _BLOCK_STATUS_AT)
        if not status & TP_STATUS_USER:
            return None
        linktype, name, skip_outgoing = self.linktype, self.interface, self._skip_outgoing
        unpack, ethernet = _TP3.unpack_from, linktype == LINKTYPE_ETHERNET
        batch: list[Packet] = []
        offset += base
        truncated = 0
        for _ in range(count):
            next_offset, sec, nsec, caplen, wirelen, pstatus, mac = unpack(ring, offset)
            if skip_outgoing and ring[offset + _TP3_PKTTYPE_AT] == PACKET_OUTGOING:
                self._extra["outgoing_ignored"] += 1
            else:
                start = offset + mac
                frame = ring[start:start + caplen]
                if pstatus & TP_STATUS_VLAN_VALID and ethernet:
                    tci, tpid = _TP3_VLAN.unpack_from(ring, offset + _TP3_VLAN_AT)
                    frame = self._restore_vlan(frame, tci, tpid if pstatus & TP_STATUS_VLAN_TPID_VALID else 0)
                if caplen < wirelen:
                    truncated += 1
                batch.append((sec + nsec * 1e-9, linktype, frame, name))
            offset += next_offset
        _BLOCK_STATUS.pack_into(ring, base + _BLOCK_STATUS_AT, TP_STATUS_KERNEL)  # back to the kernel
        self._block = (self._block + 1) % self._block_count
        self._extra["truncated"] += truncated
        return batch

    def _restore_vlan(self, frame: bytes, tci: int, tpid: int) -> bytes:
        """Put back the 802.1Q tag the kernel took off the frame (into packet metadata)."""
        self._extra["vlan_tags_restored"] += 1
        return frame[:12] + _VLAN_TAG.pack(tpid or ETH_P_8021Q, tci & 0xFFFF) + frame[12:]

    def _recv_packets(self) -> Iterator[Packet]:
        """The fallback: one recvmsg per packet, timestamps and VLAN tags from control messages."""
        sock, linktype, name = self._sock, self.linktype, self.interface
        ethernet = linktype == LINKTYPE_ETHERNET
        ancillary = socket.CMSG_SPACE(_AUXDATA.size) + socket.CMSG_SPACE(_TIMESPEC.size)
        while not self._closed:
            try:
                frame, cmsgs, _flags, address = sock.recvmsg(self.snaplen, ancillary, socket.MSG_DONTWAIT)
            except BlockingIOError:
                self.housekeeping()
                if not self._wait():
                    return
                continue
            except OSError as exc:
                self._socket_error(exc.errno or 0)
                continue
            if address[2] == PACKET_OUTGOING and not self.include_outgoing:
                self._extra["outgoing_ignored"] += 1
                continue
            ts = 0.0
            for level, kind, data in cmsgs:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(data)
                    ts = sec + nsec * 1e-9
                elif level == SOL_PACKET and kind == PACKET_AUXDATA and len(data) >= _AUXDATA.size:
                    status, wirelen, caplen, _mac, _net, tci, tpid = _AUXDATA.unpack_from(data)
                    if status & TP_STATUS_VLAN_VALID and ethernet:
                        tpid = tpid if status & TP_STATUS_VLAN_TPID_VALID else 0
                        frame = self._restore_vlan(frame, tci, tpid)
                    if caplen < wirelen:
                        self._extra["truncated"] += 1
            self._received += 1
            yield ts or time.time(), linktype, frame, name
            if not self._received & 1023:  # a link that is never quiet
                self.housekeeping()
            if self._stop_requested and self._past_deadline():
                return

    # -- waiting and stopping ----------------------------------------------------------------

    def _wait(self) -> bool:
        """Wait for packets. False when iteration should end (stopped and drained, or closed).

        While stopping, a poll that sees no packet for _QUIET_SECONDS (longer than the kernel
        takes to hand over a partly filled block) means everything received has been read.
        """
        if self._closed:
            return False
        stopping = self._stop_requested
        if stopping:
            if self._past_deadline():
                return False
            timeout = min(self._stop_deadline - time.monotonic(), _QUIET_SECONDS)
        else:
            timeout = POLL_MS / 1000
        data = False
        for fd, mask in self._poller.poll(max(timeout, 0.0) * 1000):
            if fd == self._wake:
                self._clear_wake()
            elif mask & select.POLLERR:
                self._socket_error(self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))
            else:
                data = True
        return data or not stopping

    def _past_deadline(self) -> bool:
        return time.monotonic() >= self._stop_deadline

    def _clear_wake(self) -> None:
        try:
            os.eventfd_read(self._wake)
        except BlockingIOError:
            pass

    def _socket_error(self, code: int) -> None:
        """An error the kernel reported on the socket: the interface went down or away."""
        if code == errno.ENETDOWN:
            self._extra["interface_down"] += 1
            return
        if code in (errno.ENODEV, errno.ENXIO):
            raise CaptureError(f"interface {self.interface} went away during capture")
        if code:
            raise CaptureError(f"capturing on {self.interface}: {os.strerror(code)}")

    def stop(self) -> None:
        """End iteration soon (within STOP_DRAIN_SECONDS). Safe from other threads and signal handlers."""
        if not self._stop_requested:
            self._stop_deadline = time.monotonic() + STOP_DRAIN_SECONDS
            self._stop_requested = True
        if self._wake >= 0 and not self._closed:
            try:
                os.eventfd_write(self._wake, 1)
            except OSError:
                pass

    # -- statistics and lifetime -------------------------------------------------------------

    def stats(self) -> CaptureStats:
        """Totals since the capture started (the kernel's counters reset on read; they add up here)."""
        if not self._closed:
            self._read_kernel_stats()
            self._interface_dropped = max(0, self._interface_drops() - self._interface_base)
        packets, drops, freezes = self._kernel
        extra = dict(self._extra)
        extra.update(tpacket_v3=int(self._ring is not None), kernel_packets=packets, ring_full=freezes,
                     ring_bytes=self._block_size * self._block_count)
        return CaptureStats(received=self._received, kernel_dropped=drops,
                            interface_dropped=self._interface_dropped, extra=extra)

    def _read_kernel_stats(self) -> None:
        try:
            raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size)
        except OSError:
            return
        values = _STATS.unpack(raw) if len(raw) == _STATS.size else (*struct.unpack("=II", raw[:8]), 0)
        self._kernel = [total + more for total, more in zip(self._kernel, values, strict=True)]

    def _interface_drops(self) -> int:
        """rx_dropped + rx_fifo_errors of the interface, from the network namespace it lives in."""
        if self._dev_file is None:
            return 0
        try:
            self._dev_file.seek(0)
            text = self._dev_file.read().decode()
        except OSError:
            return 0
        for line in text.splitlines()[2:]:
            name, _, counters = line.partition(":")
            if name.strip() == self.interface:
                fields = counters.split()
                return int(fields[3]) + int(fields[4])
        return 0

    def close(self) -> None:
        """Release the ring and the socket (the kernel then leaves promiscuous mode). Idempotent.

        The counters are read one last time first, so stats() stays valid after close().
        """
        if self._closed:
            return
        if self._sock.fileno() >= 0:
            self.stats()
        self._closed = True
        self._stop_requested = True
        if self._ring is not None:
            self._ring.close()  # the mmap holds its own descriptor of the socket: close it first
        self._sock.close()
        if self._wake >= 0:
            os.close(self._wake)
            self._wake = -1
        if self._dev_file is not None:
            self._dev_file.close()
            self._dev_file = None

    def __enter__(self) -> LiveCapture:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LiveCapture({self.interface!r}, mode={self.mode!r}, filter={self.bpf_filter!r})"


def _nothing() -> None:
    """The default housekeeping."""


def _interface_index(interface: str) -> int:
    try:
        return socket.if_nametoindex(interface)
    except (OSError, ValueError):
        raise CaptureError(f"no such interface: {interface}") from None


def _open_packet_socket(interface: str) -> socket.socket:
    """A packet socket with protocol 0: it receives nothing until bound with ETH_P_ALL."""
    try:
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        raise CaptureError(permission_message(interface)) from None
    except OSError as exc:
        raise CaptureError(f"capturing on {interface}: cannot open a packet socket: {exc.strerror}") from None


def _hardware_type(sock: socket.socket, interface: str) -> int:
    """ARPHRD type (ifr_hwaddr.sa_family of SIOCGIFHWADDR), asked of the socket's network namespace.

    Not /sys/class/net: that shows the namespace /sys was mounted in, which need not be ours.
    """
    try:
        return _IFREQ_FLAGS.unpack(fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR,
                                               _IFREQ_FLAGS.pack(interface.encode(), 0)))[1]
    except OSError as exc:
        raise CaptureError(f"no such interface: {interface}") from exc


def _open_dev_stats() -> BinaryIO | None:
    """/proc/<thread>/net/dev of the calling thread's network namespace, kept open for later reads.

    The open file stays tied to the namespace the capture was opened in, even if the caller
    switches namespaces afterwards (tests do; /sys/class/net would show the wrong one).
    """
    for path in ("/proc/thread-self/net/dev", "/proc/self/net/dev"):
        try:
            return open(path, "rb", buffering=0)  # noqa: SIM115 - closed by LiveCapture.close
        except OSError:
            continue
    return None
