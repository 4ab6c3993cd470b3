"""Readers for the event-camera file formats of DVS128 Gesture and CIFAR10-DVS.

- AEDAT 3.1 (DVS128 Gesture, written by cAER): an ASCII header of '#' lines, the first
  '#!AER-DAT3.1', the last '#!END-HEADER'; then packets, each a 28-byte little-endian header
  (eventType i16, eventSource i16, eventSize i32, eventTSOffset i32, eventTSOverflow i32,
  eventCapacity i32, eventNumber i32, eventValid i32) followed by eventCapacity * eventSize bytes
  (cAER writes files with capacity == number; the first eventNumber events are the packet's).
  Polarity events (type 1) are 8 bytes: u32 data, i32 timestamp. Bit 0 of data marks a valid event,
  bit 1 is the polarity, y = bits 2-16 and x = bits 17-31 (libcaer's 15-bit fields; DVS128 only uses
  7 bits, and a wider value is then caught as out of range rather than wrapped into the sensor).
  The full timestamp is `eventTSOverflow << 31 | timestamp`, in microseconds.
- AER-DAT 2.0 (CIFAR10-DVS, written by jAER): '#' header lines, the first '#!AER-DAT2.0', then
  big-endian (u32 address, u32 timestamp) pairs. DVS128 addresses: polarity = bit 0,
  column = bits 1-7, row = bits 8-14.
- AEDAT 4.0 (tonic's converted CIFAR10-DVS, and the sample in shared/): read with the `aedat`
  package, the decoder tonic itself uses.

All parsing is vectorised over events; Python loops run per packet or per header line only. Every
malformed file raises CorruptDataError naming the file and what is wrong with it.
"""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import numpy as np

from suite.errors import CorruptDataError, MissingExtraError
from tasks.events.stream import EVENT_DTYPE, make_events

log = logging.getLogger(__name__)

MAGIC = b"#!AER-DAT"
END_HEADER = b"#!END-HEADER"
FORMAT_NAMES = {"2": "AER-DAT 2.0", "3": "AEDAT 3.1", "4": "AEDAT 4.0"}

PACKET_HEADER = struct.Struct("<hhiiiiii")  # 28 bytes, see module docstring
POLARITY_EVENT = 1
POLARITY_DTYPE = np.dtype([("data", "<u4"), ("ts", "<i4")])


def sniff_version(path: str | Path) -> str | None:
    """The format version in the file's first line ('2.0', '3.1', '4.0'...), or None if it has none."""
    with open(path, "rb") as f:
        first = f.readline(256)
    if not first.startswith(MAGIC):
        return None
    return first[len(MAGIC) :].strip().decode("ascii", errors="replace") or None


def _describe_version(version: str | None) -> str:
    if version is None:
        return "a file without an '#!AER-DAT' version line"
    return FORMAT_NAMES.get(version[:1], f"AER-DAT {version}")


def _require_version(path: Path, data: bytes, major: str) -> None:
    first = data[:256].split(b"\n", 1)[0]
    version = first[len(MAGIC) :].strip().decode("ascii", "replace") if first.startswith(MAGIC) else None
    if version is None or not version.startswith(major):
        raise CorruptDataError(
            f"{path}: this is {_describe_version(version)}, expected {FORMAT_NAMES[major]} "
            f"(first line {first[:40]!r})"
        )


def _header_end(path: Path, data: bytes, *, needs_end_marker: bool) -> int:
    """Byte offset just past the '#' header lines."""
    pos = 0
    while data[pos : pos + 1] == b"#":
        newline = data.find(b"\n", pos)
        if newline < 0:
            raise CorruptDataError(f"{path}: the header's last line never ends: file truncated inside the header")
        line = data[pos:newline].rstrip(b"\r")
        pos = newline + 1
        if needs_end_marker and line == END_HEADER:
            return pos
    if needs_end_marker:
        raise CorruptDataError(
            f"{path}: the AEDAT 3.1 header has no '#!END-HEADER' line before byte {pos} "
            "(file truncated inside the header, or not written by cAER)"
        )
    return pos


def read_aedat31_polarity(path: str | Path) -> np.ndarray:
    """The valid polarity events of an AEDAT 3.1 file, in file order, as an `EVENT_DTYPE` array."""
    path = Path(path)
    data = path.read_bytes()
    _require_version(path, data, "3")
    pos = _header_end(path, data, needs_end_marker=True)
    chunks: list[np.ndarray] = []
    overflows: list[int] = []
    size = len(data)
    while pos < size:
        if size - pos < PACKET_HEADER.size:
            raise CorruptDataError(
                f"{path}: file ends inside a packet header at byte {pos} "
                f"({size - pos} of {PACKET_HEADER.size} bytes): truncated file"
            )
        ev_type, _source, ev_size, ts_offset, ts_overflow, capacity, number, valid = PACKET_HEADER.unpack_from(
            data, pos
        )
        if ev_size <= 0 or capacity < 0 or not 0 <= number <= capacity or not 0 <= valid <= number:
            raise CorruptDataError(
                f"{path}: packet header at byte {pos} is inconsistent (eventSize={ev_size}, "
                f"eventCapacity={capacity}, eventNumber={number}, eventValid={valid})"
            )
        start = pos + PACKET_HEADER.size
        end = start + capacity * ev_size
        if end > size:
            raise CorruptDataError(
                f"{path}: packet at byte {pos} says {number} events of {ev_size} bytes "
                f"({capacity * ev_size} bytes) but the file ends {size - start} bytes into it: truncated file"
            )
        if ev_type == POLARITY_EVENT and number:
            if ev_size != POLARITY_DTYPE.itemsize or ts_offset != 4:
                raise CorruptDataError(
                    f"{path}: polarity packet at byte {pos} has eventSize={ev_size}, "
                    f"eventTSOffset={ts_offset}; AEDAT 3.1 polarity events are 8 bytes with the timestamp at 4"
                )
            chunks.append(np.frombuffer(data, dtype=POLARITY_DTYPE, count=number, offset=start))
            overflows.append(ts_overflow)
        pos = end
    if not chunks:
        return np.empty(0, dtype=EVENT_DTYPE)
    raw = np.concatenate(chunks)
    overflow = np.repeat(np.asarray(overflows, dtype=np.int64), [len(c) for c in chunks])
    word = raw["data"]
    is_valid = (word & 1).astype(bool)
    n_invalid = int(raw.size - is_valid.sum())
    if n_invalid:
        # The format marks these as deleted by the recorder; readers must ignore them.
        log.debug("%s: ignored %d events the recorder marked invalid", path, n_invalid)
        word, overflow, ts = word[is_valid], overflow[is_valid], raw["ts"][is_valid]
    else:
        ts = raw["ts"]
    return make_events(
        t=(overflow << 31) | ts.astype(np.int64),
        x=(word >> 17) & 0x7FFF,
        y=(word >> 2) & 0x7FFF,
        p=(word >> 1) & 1,
    )


def read_aerdat2_addresses(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The raw (address, timestamp) u32 pairs of an AER-DAT 2.0 file."""
    path = Path(path)
    data = path.read_bytes()
    _require_version(path, data, "2")
    pos = _header_end(path, data, needs_end_marker=False)
    body = len(data) - pos
    if body % 8:
        raise CorruptDataError(
            f"{path}: the event data is {body} bytes, not a multiple of 8 (address + timestamp): "
            "file truncated mid-event"
        )
    pairs = np.frombuffer(data, dtype=">u4", offset=pos).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def read_cifar10_dvs_aedat(path: str | Path) -> np.ndarray:
    """Events of an original CIFAR10-DVS AER-DAT 2.0 file, oriented as the Spikformer pipeline saw them.

    spikingjelly (which Spikformer's CIFAR10-DVS training used) maps the jAER DVS128 address to
    x = 127 - row, y = 127 - column and ON = 1 - bit 0; we keep exactly that orientation so that
    frames and the published accuracy refer to the same images.
    """
    address, timestamp = read_aerdat2_addresses(path)
    column = (address & 0xFE) >> 1
    row = (address & 0x7F00) >> 8
    return make_events(t=timestamp.astype(np.int64), x=127 - row, y=127 - column, p=1 - (address & 1))


def read_aedat4_events(path: str | Path) -> np.ndarray:
    """Events of the first event stream of an AEDAT 4.0 file (needs the `aedat` package)."""
    path = Path(path)
    try:
        import aedat
    except ImportError as err:
        raise MissingExtraError.for_feature(f"{path}: reading AEDAT 4.0 files", "aedat", err) from err
    version = sniff_version(path)
    if version is None or not version.startswith("4"):
        raise CorruptDataError(f"{path}: this is {_describe_version(version)}, expected AEDAT 4.0")
    try:
        decoder = aedat.Decoder(str(path))
        event_streams = [sid for sid, s in decoder.id_to_stream().items() if s["type"] == "events"]
        if not event_streams:
            raise CorruptDataError(f"{path}: the AEDAT 4.0 file has no event stream")
        stream = min(event_streams)
        chunks = [packet["events"] for packet in decoder if packet["stream_id"] == stream and "events" in packet]
    except CorruptDataError:
        raise
    except Exception as err:  # the Rust decoder reports truncation and bad LZ4/flatbuffers as plain errors
        raise CorruptDataError(f"{path}: cannot decode the AEDAT 4.0 file: {err}") from err
    if not chunks:
        return np.empty(0, dtype=EVENT_DTYPE)
    raw = np.concatenate(chunks)
    return make_events(t=raw["t"].astype(np.int64), x=raw["x"], y=raw["y"], p=raw["on"])
