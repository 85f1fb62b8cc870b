"""Classic BPF capture filters for the live source: compiled by libpcap, run by the kernel.

The filter language is tcpdump's, so the compiler is libpcap's own
(``pcap_compile`` on a "dead" handle through :mod:`ctypes`): writing a second
compiler for that grammar would only produce a second, subtly different
dialect. The result is a list of classic BPF instructions that
:func:`attach` hands to the kernel with ``SO_ATTACH_FILTER``; packets the
filter rejects are never copied to user space, which is the point on a busy
mirror port.

Why it is written the way it is:

* **One instruction layout.** libpcap's ``struct bpf_insn`` and the kernel's
  ``struct sock_filter`` are the same eight bytes (u16 code, u8 jt, u8 jf,
  u32 k), so a compiled program is kept as those raw bytes and passed on
  unchanged.
* **Snapshot length lives in the program.** A classic BPF program returns
  how many bytes of the packet to keep; libpcap compiles the snapshot length
  into every accepting ``ret``. Without a user filter :func:`accept_all`
  builds the one-instruction program ``ret #snaplen`` so the kernel truncates
  frames even then (the TPACKET_V3 ring would otherwise keep up to a block).
* **Compiled for the interface's link type.** Offsets differ between
  Ethernet and raw IP; the caller passes the link type it reads from the
  interface. Note that the kernel removes an outer 802.1Q tag before the
  filter runs (the tag travels in packet metadata), and a filter compiled on a
  dead handle cannot use the kernel's VLAN extensions: ``vlan`` primitives do
  not match on Linux live capture, while filters on addresses, ports and
  protocols see the untagged frame and match as expected.
* **Errors are one line** quoting libpcap's own message.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import struct
from functools import cache

from sensor.capture import CaptureError

__all__ = ["BPF_MAXINSNS", "accept_all", "attach", "compile_filter", "instruction_count", "instructions"]

BPF_MAXINSNS = 4096
"""Longest classic BPF program the Linux kernel accepts."""

SO_ATTACH_FILTER = 26
_PCAP_NETMASK_UNKNOWN = 0xFFFFFFFF
_BPF_RET_K = 0x06  # BPF_RET | BPF_K
_INSN = struct.Struct("=HBBI")  # code, jt, jf, k: bpf_insn == sock_filter
_LIBPCAP_NAMES = ("libpcap.so.0.8", "libpcap.so.1", "libpcap.so")


class _BpfProgram(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.c_void_p)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


@cache
def _libpcap() -> ctypes.CDLL:
    """Load libpcap once, with prototypes for the four calls used here."""
    names = list(_LIBPCAP_NAMES)
    found = ctypes.util.find_library("pcap")
    if found:
        names.append(found)
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_BpfProgram), ctypes.c_char_p,
                                     ctypes.c_int, ctypes.c_uint32]
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgram)]
        lib.pcap_freecode.restype = None
        lib.pcap_close.argtypes = [ctypes.c_void_p]
        lib.pcap_close.restype = None
        return lib
    raise CaptureError("capture filters need libpcap (libpcap.so.0.8 not found; apt-get install libpcap0.8)")


def compile_filter(expression: str, linktype: int, snaplen: int) -> bytes:
    """Compile a tcpdump-syntax filter to kernel ``sock_filter`` instructions (raw bytes).

    Raises :class:`CaptureError` with libpcap's message when the expression
    does not compile, or when the program is too long for the kernel.
    """
    lib = _libpcap()
    handle = lib.pcap_open_dead(linktype, snaplen)
    if not handle:
        raise CaptureError(f"libpcap cannot compile filters for link type {linktype}")
    program = _BpfProgram()
    try:
        optimize = 1
        if lib.pcap_compile(handle, ctypes.byref(program), expression.encode(), optimize,
                            _PCAP_NETMASK_UNKNOWN) != 0:
            message = (lib.pcap_geterr(handle) or b"does not compile").decode(errors="replace")
            raise CaptureError(f"bad capture filter {_quote(expression)}: {' '.join(message.split())}")
        try:
            code = ctypes.string_at(program.bf_insns, program.bf_len * _INSN.size)
        finally:
            lib.pcap_freecode(ctypes.byref(program))
    finally:
        lib.pcap_close(handle)
    if instruction_count(code) > BPF_MAXINSNS:
        raise CaptureError(f"capture filter {_quote(expression)} compiles to {instruction_count(code)} BPF"
                           f" instructions, more than the kernel's {BPF_MAXINSNS}")
    return code


def _quote(expression: str, limit: int = 80) -> str:
    """The expression for an error line: quoted, and shortened if it is long."""
    return repr(expression if len(expression) <= limit else expression[:limit - 3] + "...")


def accept_all(snaplen: int) -> bytes:
    """The program ``ret #snaplen``: keep every packet, truncated to ``snaplen`` bytes."""
    return _INSN.pack(_BPF_RET_K, 0, 0, snaplen)


def instruction_count(code: bytes) -> int:
    return len(code) // _INSN.size


def instructions(code: bytes) -> list[tuple[int, int, int, int]]:
    """The program as (code, jt, jf, k) tuples, for tests and debugging."""
    return [_INSN.unpack_from(code, offset) for offset in range(0, len(code), _INSN.size)]


def attach(sock: socket.socket, code: bytes) -> None:
    """Attach the program to ``sock`` (SO_ATTACH_FILTER); the kernel copies it, so buffers may go."""
    buffer = ctypes.create_string_buffer(code, len(code))
    fprog = _SockFprog(instruction_count(code), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(fprog))
