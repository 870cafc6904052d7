"""Give an mp4 a display-matrix rotation as phones write it: the 3x3 matrix in the video track's ``tkhd`` box
(ISO 14496-12 8.3.2), patched in place. PyAV cannot write rotation metadata; FFmpeg reads this matrix into the
frames' display matrix (``frame.rotation``)."""
import struct

_CONTAINERS = {b"moov", b"trak", b"mdia"}
_ONE = 1 << 16  # 16.16 fixed point


def _boxes(data: bytes, start: int, end: int):
    """(type, box start, payload start, box end) of the boxes in data[start:end]."""
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[at + 8:at + 16])[0], 16
        elif size == 0:
            size = end - at
        yield kind, at, at + header, at + size
        at += size


def _video_tkhd(data: bytes):
    """Payload offsets of the tkhd boxes of video tracks."""
    for kind, _, body, end in _boxes(data, 0, len(data)):
        if kind != b"moov":
            continue
        for kind, _, trak, trak_end in _boxes(data, body, end):
            if kind != b"trak":
                continue
            tkhd, is_video = None, False
            for kind, _, child, child_end in _boxes(data, trak, trak_end):
                if kind == b"tkhd":
                    tkhd = child
                elif kind == b"mdia":
                    for kind, _, hdlr, _ in _boxes(data, child, child_end):
                        if kind == b"hdlr" and data[hdlr + 8:hdlr + 12] == b"vide":
                            is_video = True
            if tkhd is not None and is_video:
                yield tkhd


def set_rotation(path, degrees: int) -> None:
    """Write the display matrix that rotates the picture ``degrees`` (a multiple of 90) counter-clockwise, as
    FFmpeg counts it (``av_display_rotation_get``, PyAV ``frame.rotation``)."""
    cos, sin = {0: (1, 0), 90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees % 360]
    data = bytearray(open(path, "rb").read())
    found = False
    for tkhd in _video_tkhd(bytes(data)):
        version = data[tkhd]
        matrix = tkhd + 4 + (32 if version == 1 else 20) + 8 + 8  # times/ids/duration, reserved, layer..volume
        # a b u / c d v / x y w: FFmpeg takes this as the transposed display matrix
        values = [cos * _ONE, -sin * _ONE, 0, sin * _ONE, cos * _ONE, 0, 0, 0, 1 << 30]
        data[matrix:matrix + 36] = struct.pack(">9i", *values)
        found = True
    if not found:
        raise ValueError(f"{path}: no video track header (tkhd) found")
    open(path, "wb").write(bytes(data))
