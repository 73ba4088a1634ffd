"""Video and audio file I/O: mp4 writing with ffmpeg, exact decoding with PyAV.

Conventions (see CONTRIBUTING.md): frames are RGB ``uint8`` arrays ``(T, H, W, 3)``; audio is
``float32`` mono in [-1, 1]; the book works at 25 fps and 16 kHz.

Time model. Every decoded signal is placed on one clock whose zero is the *video time zero*: the
presentation time of the first video frame (the video stream's ``start_time``). Output video frame
``k`` represents time ``k / fps`` and audio sample ``n`` represents time ``n / sr`` on that clock, so
audio and video are aligned by container timestamps, never by assuming both start together. Files
without video use the audio stream's start as time zero.

Writing uses the static ffmpeg shipped by ``imageio-ffmpeg`` (not on PATH): raw RGB frames are piped
to its stdin and encoded as H.264 yuv420p (lossy: ~33 dB PSNR at crf 18), audio as AAC. Every writer
is atomic (:func:`avlib.artifacts.atomic_path`): it writes a hidden temporary file in the destination
folder and renames it, and removes it on any failure, so a destination path either holds a complete
file or nothing new.

Errors about the *input file* raise :class:`MediaError`, whose ``reason`` is a short code that a
preprocessing pipeline can record as a rejection reason (see :data:`REASONS`). A file that ends
before the duration its container declares is "truncated"; damaged data inside a file whose
packets are all present is "corrupt". Errors writing the *output* that are the machine's, not
the data's (disk full, quota, read-only file system, permission denied) raise ``OSError`` with
that errno and the destination's name, also when ffmpeg is the one that hit them. Programming
errors (bad array shapes, bad arguments) raise ``ValueError``.
"""

from __future__ import annotations

import errno
import io
import math
import os
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from avlib.artifacts import atomic_path, check_destination, temp_path
from avlib.audio import FPS, SR
from avlib.cli import EXIT_INPUT, EXIT_OUTPUT

__all__ = [
    "REASONS",
    "MediaError",
    "VideoInfo",
    "AVClip",
    "ffmpeg_exe",
    "write_video",
    "write_wav",
    "probe",
    "read_video",
    "iter_video",
    "read_audio",
    "read_av",
    "remux_with_shifted_audio",
]

#: ``MediaError.reason`` codes and what they mean.
REASONS = {
    "missing": "the path does not exist",
    "not_media": "the file is empty, a directory, or not in any audio/video format ffmpeg knows",
    "corrupt": "the file looks like a media container but cannot be opened or decoded",
    "truncated": "the file ends before the data its header declares (fewer packets/frames decode)",
    "no_video": "the file has no video stream",
    "no_audio": "the file has no audio stream but audio was required",
    "too_large": "the resolution or the decoded size exceeds the configured guard",
    "encode_failed": "ffmpeg failed while writing",
}

#: Default guard on decoded resolution: 4K UHD.
DEFAULT_MAX_PIXELS = 3840 * 2160
#: Default guard on the total size of the array ``read_video`` would return (4 GiB).
DEFAULT_MAX_BYTES = 4 * 1024**3

_X264_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast",
    "medium", "slow", "slower", "veryslow", "placebo",
)
# Containers that understand "-movflags +faststart" (moov atom moved to the front).
_MOV_SUFFIXES = (".mp4", ".m4v", ".mov", ".m4a")
# Slack when comparing timestamps (seconds): far below one frame or one ms, far above
# the rounding of any container time base.
_TIME_EPS = 1e-4
# Containers whose header declares the duration (written when the file was finished): a file
# that demuxes to less than that was cut short. Others estimate it from what is there (or from
# the bit rate, which would be a false alarm).
_DECLARING_FORMATS = ("matroska", "webm", "mov", "mp4", "avi", "flv", "asf", "flac", "wav", "w64")
# How much shorter than declared the demuxed streams may be before the file counts as truncated
# (seconds): codec priming and muxers' rounding stay far below it.
_TRUNCATION_SLACK_S = 0.1
# ffmpeg messages that are the machine's write errors, not the data's.
_FFMPEG_OS_ERRORS = (("No space left on device", errno.ENOSPC), ("Disk quota exceeded", errno.EDQUOT),
                     ("Read-only file system", errno.EROFS), ("Permission denied", errno.EACCES),
                     ("File too large", errno.EFBIG), ("Input/output error", errno.EIO))


class MediaError(Exception):
    """A media file cannot be used. ``reason`` is a short code from :data:`REASONS`.

    ``str(err)`` is a full sentence naming the file and what to do; ``err.path`` is the file.
    """

    @property
    def exit_code(self) -> int:
        """Command-line class (:mod:`avlib.cli`): writing failed = output, else an input problem."""
        return EXIT_OUTPUT if self.reason == "encode_failed" else EXIT_INPUT

    def __init__(self, reason: str, message: str, path: str | os.PathLike | None = None):
        if reason not in REASONS:
            raise ValueError(f"unknown MediaError reason {reason!r}; expected one of {sorted(REASONS)}")
        self.reason = reason
        self.path = None if path is None else str(path)
        super().__init__(message)

    def __reduce__(self):
        # Keeps reason and path when the error crosses a process boundary (corpus workers).
        return (type(self), (self.reason, str(self), self.path))


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe` learns about a file from its header and a demux pass (no decoding).

    Attributes:
        duration: container duration in seconds (the longest stream).
        fps: average video frame rate (frames / video_duration), 0.0 without video.
        n_frames: number of video packets (= frames for H.264 and every intra codec).
        width, height: coded video size in pixels (0 without video).
        has_video, has_audio: whether a video / audio stream exists.
        audio_sr: audio sample rate in Hz (0 without audio).
        audio_channels: audio channel count (0 without audio).
        variable_frame_rate: True when the video frame intervals are not all equal (more than one
            time-base tick and 1 % apart).
        video_duration: seconds from the first video frame to the end of the last one (0.0 without
            video).
        audio_duration: seconds of audio the container declares, or a packet-based estimate when it
            declares none (e.g. Matroska); None without audio.
    """

    duration: float
    fps: float
    n_frames: int
    width: int
    height: int
    has_video: bool
    has_audio: bool
    audio_sr: int
    audio_channels: int
    variable_frame_rate: bool
    video_duration: float = 0.0
    audio_duration: float | None = None


@dataclass
class AVClip:
    """Decoded audio-visual clip on one clock (see the module docstring).

    Attributes:
        frames: RGB uint8 ``(T, H, W, 3)`` at ``fps``.
        audio: float32 mono ``(N,)`` in [-1, 1] at ``sr``.
        fps: video frame rate (frames/s).
        sr: audio sample rate (Hz).
        info: the source file's :class:`VideoInfo`.
    """

    frames: np.ndarray
    audio: np.ndarray
    fps: float
    sr: int
    info: VideoInfo


# --------------------------------------------------------------------------------------------
# ffmpeg subprocess and atomic files
# --------------------------------------------------------------------------------------------


def ffmpeg_exe() -> str:
    """Path of the static ffmpeg binary shipped by ``imageio-ffmpeg`` (it is not on PATH)."""
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _check_destination(path: str | os.PathLike) -> Path:
    return check_destination(path)


def _unlink_quietly(path: Path | None) -> None:
    """Remove a temporary; never raises (a failed cleanup must not hide the error being handled)."""
    if path is not None:
        try:
            path.unlink()
        except OSError:
            pass


def _wav_bytes(data: np.ndarray, sr: int, subtype: str) -> bytes:
    """A WAV file in memory: written to disk by Python, a full disk is ENOSPC, not libsndfile's
    bare "System error"."""
    buffer = io.BytesIO()
    sf.write(buffer, data, int(sr), subtype=subtype, format="WAV")
    return buffer.getvalue()


def _as_rate(fps: float | Fraction) -> Fraction:
    """Frame rate as an exact fraction; 29.97-style NTSC rates become n*1000/1001."""
    if isinstance(fps, Fraction):
        rate = fps
    else:
        fps = float(fps)
        if not math.isfinite(fps):
            raise ValueError(f"fps must be a finite positive number, got {fps}")
        rate = Fraction(fps).limit_denominator(1001)
        for nominal in (24, 30, 48, 60, 120):
            ntsc = Fraction(nominal * 1000, 1001)
            if abs(fps - float(ntsc)) < 1e-3:
                rate = ntsc
    if rate <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    return rate


def _run_ffmpeg(args: list[str], what: str, stdin_chunks: Iterable[bytes | memoryview] | None = None,
                output: tuple[Path, Path] | None = None) -> None:
    """Run ffmpeg with ``args``; optionally stream ``stdin_chunks`` to its stdin.

    stderr goes to a temporary file, not a pipe: a pipe nobody reads fills up and deadlocks ffmpeg
    while we are still writing frames. Raises MediaError("encode_failed") with ffmpeg's message,
    or, when ffmpeg could not write ``output = (temporary, destination)`` for a reason of the
    machine (disk full, quota, read-only, permission), OSError with that errno naming the
    destination.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args]
    with tempfile.TemporaryFile() as errf:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if stdin_chunks is not None else subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errf,
        )
        broken_pipe = False
        try:
            if stdin_chunks is not None:
                try:
                    for chunk in stdin_chunks:
                        proc.stdin.write(chunk)
                except BrokenPipeError:
                    # ffmpeg exited early; its stderr says why.
                    broken_pipe = True
                finally:
                    try:
                        proc.stdin.close()
                    except BrokenPipeError:
                        broken_pipe = True
            rc = proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        if rc != 0 or broken_pipe:
            errf.seek(0)
            tail = errf.read().decode("utf-8", "replace").strip()[-2000:]
            failure = MediaError("encode_failed", f"ffmpeg failed while {what} (exit code {rc}): {tail or 'no message'}")
            os_error = _ffmpeg_os_error(tail, output)
            if os_error is not None:
                raise os_error from failure
            raise failure


def _ffmpeg_os_error(tail: str, output: tuple[Path, Path] | None) -> OSError | None:
    """The OSError behind an ffmpeg failure to write ``output``, if its message names one."""
    if output is None:
        return None
    tmp, final = output
    for line in tail.splitlines():
        for text, code in _FFMPEG_OS_ERRORS:
            # Space, quota and read-only are write errors wherever they appear; permission and
            # I/O errors only when the line is about the file being written (not the input).
            if text in line and (code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)
                                 or str(tmp) in line or tmp.name in line):
                cls = PermissionError if code == errno.EACCES else OSError
                return cls(code, os.strerror(code), str(final))
    return None


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def _prepare_audio(audio: np.ndarray, name: str = "audio") -> np.ndarray:
    """Validate a mono signal; return float32 clipped to [-1, 1]."""
    arr = np.asarray(audio)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be mono with shape (N,), got shape {arr.shape}; downmix with x.mean(axis=1)")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{name} must be float in [-1, 1], got dtype {arr.dtype}; for int16 use x / 32768")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    # Peaks beyond full scale would wrap in PCM and distort in AAC: clip them deliberately.
    return np.clip(arr, -1.0, 1.0).astype(np.float32, copy=False)


def _frame_chunks(first: np.ndarray, rest: Iterator, shape: tuple[int, int], pad: tuple[int, int]) -> Iterator[memoryview]:
    """Raw rgb24 bytes per frame, checking every frame has the first frame's size."""
    pad_h, pad_w = pad
    index = 0
    for frame in _chain_first(first, rest):
        frame = np.asarray(frame)
        if frame.shape != (*shape, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"frame {index} has shape {frame.shape} and dtype {frame.dtype}; "
                f"every frame must be uint8 {(*shape, 3)} like frame 0"
            )
        if pad_h or pad_w:
            frame = np.pad(frame, ((0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        yield memoryview(np.ascontiguousarray(frame)).cast("B")
        index += 1
    if index == 0:
        raise ValueError("no frames to write")


def _chain_first(first, rest):
    yield first
    yield from rest


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray | Iterable[np.ndarray],
    fps: float | Fraction = FPS,
    audio: np.ndarray | None = None,
    sr: int = SR,
    crf: int = 18,
    preset: str = "veryfast",
    *,
    pad_odd: bool = False,
    audio_bitrate: str = "64k",
) -> Path:
    """Encode RGB frames (and optional mono audio) to an H.264 yuv420p file, atomically.

    Args:
        path: destination (``.mp4`` recommended; ``.mov``/``.mkv`` also work). Its folder must exist.
        frames: RGB uint8 ``(T, H, W, 3)``, or any iterable of ``(H, W, 3)`` frames (streamed to
            ffmpeg one at a time, so long videos need not fit in memory).
        fps: frame rate (frames/s); 29.97-style values are stored as exact n*1000/1001 rates.
        audio: optional float32 mono ``(N,)`` in [-1, 1] at ``sr`` Hz, muxed in as mono AAC at
            ``sr`` (16 kHz by convention). It is stored exactly as given: neither padded nor trimmed
            to the video length, so the audio and video streams keep their own durations (both start
            at time zero) and the container duration is the longer one. Peaks beyond [-1, 1] are
            clipped.
        sr: audio sample rate in Hz.
        crf: x264 constant rate factor (0-51, lower = better; 18 is visually near-lossless).
        preset: x264 speed preset.
        pad_odd: yuv420p needs even width and height. By default odd sizes raise ``ValueError``;
            with ``pad_odd=True`` the last row/column is replicated, so the file is one pixel
            taller/wider than the input.
        audio_bitrate: AAC bit rate (ffmpeg syntax).

    Returns:
        The destination path. The file has ``+faststart`` (index at the front) for mp4/mov.

    Raises:
        ValueError: bad frames/audio/arguments. MediaError("encode_failed"): ffmpeg failed; no file
        (and no temporary file) is left behind.
    """
    dst = _check_destination(path)
    rate = _as_rate(fps)
    if not isinstance(crf, (int, np.integer)) or not 0 <= crf <= 51:
        raise ValueError(f"crf must be an integer in 0..51, got {crf!r}")
    if preset not in _X264_PRESETS:
        raise ValueError(f"preset must be one of {_X264_PRESETS}, got {preset!r}")
    if int(sr) <= 0:
        raise ValueError(f"sr must be a positive sample rate in Hz, got {sr}")

    if isinstance(frames, np.ndarray):
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"frames must have shape (T, H, W, 3) RGB, got {frames.shape}")
        if frames.shape[0] == 0:
            raise ValueError("frames is empty (T == 0): nothing to write")
        frame_iter: Iterator = iter(frames)
    else:
        frame_iter = iter(frames)
    try:
        first = np.asarray(next(frame_iter))
    except StopIteration:
        raise ValueError("frames is empty: nothing to write") from None
    if first.ndim != 3 or first.shape[-1] != 3:
        raise ValueError(f"each frame must have shape (H, W, 3) RGB, got {first.shape}")
    if first.dtype != np.uint8:
        raise ValueError(
            f"frames must be uint8, got {first.dtype}; convert with (x * 255).round().clip(0, 255).astype(np.uint8)"
        )
    height, width = first.shape[:2]
    pad = (height % 2, width % 2)
    if any(pad) and not pad_odd:
        raise ValueError(
            f"frame size {width}x{height} has an odd side; H.264 yuv420p needs even width and height: "
            "crop or pad the frames, or pass pad_odd=True to replicate the last row/column"
        )
    audio_arr = None if audio is None else _prepare_audio(audio)

    tmp_wav = temp_path(dst, ".wav") if audio_arr is not None else None
    try:
        with atomic_path(dst, make_parents=False) as tmp_out:
            _encode_video(dst, tmp_out, tmp_wav, first, frame_iter, rate, (height, width), pad, audio_arr,
                          sr, crf, preset, audio_bitrate)
    finally:
        _unlink_quietly(tmp_wav)
    return dst


def _encode_video(dst, tmp_out, tmp_wav, first, frame_iter, rate, size, pad, audio_arr, sr, crf, preset,
                  audio_bitrate) -> None:
    """The ffmpeg run of :func:`write_video` into the temporary ``tmp_out``."""
    height, width = size
    args = [
        "-f", "rawvideo", "-pix_fmt", "rgb24",
        "-s", f"{width + pad[1]}x{height + pad[0]}",
        "-framerate", f"{rate.numerator}/{rate.denominator}",
        "-i", "pipe:0",
    ]
    if audio_arr is not None:
        # Float WAV keeps the input lossless up to the AAC encoder.
        try:
            with open(tmp_wav, "xb") as handle:
                handle.write(_wav_bytes(audio_arr, sr, "FLOAT"))
        except OSError as err:  # name the destination, not the hidden temporary
            if err.errno is None:
                raise
            raise type(err)(err.errno, err.strerror, str(dst)) from err
        args += ["-i", str(tmp_wav)]
    args += ["-map", "0:v:0"]
    if audio_arr is not None:
        args += ["-map", "1:a:0"]
    args += ["-c:v", "libx264", "-preset", preset, "-crf", str(int(crf)), "-pix_fmt", "yuv420p"]
    if audio_arr is not None:
        args += ["-c:a", "aac", "-b:a", audio_bitrate, "-ar", str(int(sr)), "-ac", "1"]
    if dst.suffix.lower() in _MOV_SUFFIXES:
        args += ["-movflags", "+faststart"]
    args += [str(tmp_out)]
    _run_ffmpeg(args, f"writing {dst}", _frame_chunks(first, frame_iter, (height, width), pad),
                output=(tmp_out, dst))


def write_wav(path: str | os.PathLike, audio: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    """Write float audio in [-1, 1] to a WAV file atomically (soundfile).

    Args:
        path: destination; its folder must exist.
        audio: float ``(N,)`` mono or ``(N, C)`` multichannel, in [-1, 1]; peaks beyond are clipped
            (PCM would otherwise wrap around).
        sr: sample rate in Hz.
        subtype: soundfile subtype, ``"PCM_16"`` (default, what every tool reads) or ``"FLOAT"``.
    """
    dst = _check_destination(path)
    arr = np.asarray(audio)
    if arr.ndim == 2:
        channels = [_prepare_audio(arr[:, c], f"audio channel {c}") for c in range(arr.shape[1])]
        if not channels:
            raise ValueError(f"audio has shape {arr.shape}: no channels")
        data = np.stack(channels, axis=1)
    else:
        data = _prepare_audio(arr)
    if int(sr) <= 0:
        raise ValueError(f"sr must be a positive sample rate in Hz, got {sr}")
    blob = _wav_bytes(data, sr, subtype)
    with atomic_path(dst, make_parents=False) as tmp:
        with open(tmp, "xb") as handle:
            handle.write(blob)
    return dst


# --------------------------------------------------------------------------------------------
# opening and probing
# --------------------------------------------------------------------------------------------


def _looks_like_media(head: bytes) -> bool:
    """True when the first bytes carry a known audio/video container signature."""
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
        return True
    signatures = (b"RIFF", b"\x1a\x45\xdf\xa3", b"OggS", b"fLaC", b"ID3", b"FLV", b"caff", b"FORM",
                  b".snd", b"\x00\x00\x01\xba", b"\x30\x26\xb2\x75")
    if head.startswith(signatures):
        return True
    # MPEG-TS sync bytes, ADTS AAC / MP3 frame sync.
    return (len(head) > 188 and head[0] == 0x47 and head[188] == 0x47) or (
        len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
    )


def _open(path: str | os.PathLike) -> tuple[av.container.InputContainer, bytes]:
    """Open ``path`` with PyAV, turning every failure into a MediaError with a reason."""
    p = Path(path)
    if not p.exists():
        raise MediaError("missing", f"{p}: file not found", p)
    if p.is_dir():
        raise MediaError("not_media", f"{p} is a directory, not a media file", p)
    if p.stat().st_size == 0:
        raise MediaError("not_media", f"{p} is empty (0 bytes)", p)
    with open(p, "rb") as fh:
        head = fh.read(512)
    try:
        container = av.open(str(p), mode="r")
    except av.error.FFmpegError as err:
        if _looks_like_media(head):
            raise MediaError("corrupt", f"{p} looks like a media file but ffmpeg cannot open it ({err})", p) from err
        raise MediaError("not_media", f"{p} is not an audio/video file ffmpeg recognises ({err})", p) from err
    if not container.streams.video and not container.streams.audio:
        container.close()
        if _looks_like_media(head):
            raise MediaError("corrupt", f"{p} has no readable audio or video stream: the container is damaged", p)
        raise MediaError("not_media", f"{p} has no audio or video stream", p)
    return container, head


def _video_time_zero(container, vstream) -> float:
    """Seconds of the first video frame on the container clock (the module's time zero)."""
    if vstream.start_time is not None:
        return float(vstream.start_time * vstream.time_base)
    if container.start_time is not None:
        return container.start_time / av.time_base
    return 0.0


def _packet_scan(container, vstream, astream, path) -> dict:
    """Demux (no decoding) the first video and audio stream; detect truncation.

    Returns video pts (stream ticks), per-packet durations and audio packet stats.
    """
    streams = [s for s in (vstream, astream) if s is not None]
    v_pts: list[int] = []
    v_dur: dict[int, int] = {}
    a_first = a_last = a_last_dur = None
    a_count = 0
    end_pos = biggest = 0  # byte just after the furthest packet read; largest packet (bytes)
    damaged: set[str] = set()  # stream types with a damaged packet
    last_damaged: dict[str, bool] = {}  # whether each stream's latest packet was damaged
    try:
        for packet in container.demux(*streams):
            if packet.size == 0:  # flush packet at the end of each stream
                continue
            kind = packet.stream.type
            if packet.pos is not None and packet.pos >= 0:
                end_pos = max(end_pos, packet.pos + packet.size)
            biggest = max(biggest, packet.size)
            last_damaged[kind] = packet.is_corrupt
            if packet.is_corrupt:
                damaged.add(kind)
            if vstream is not None and packet.stream.index == vstream.index:
                if packet.pts is not None:
                    v_pts.append(packet.pts)
                    v_dur[packet.pts] = packet.duration or 0
            else:
                a_count += 1
                if packet.pts is not None:
                    a_first = packet.pts if a_first is None else min(a_first, packet.pts)
                    if a_last is None or packet.pts >= a_last:
                        a_last, a_last_dur = packet.pts, packet.duration or 0
    except av.error.FFmpegError as err:
        raise MediaError("corrupt", f"{path}: demuxing failed ({err})", path) from err
    # Demuxers flag a packet cut short by the end of the file as corrupt: the last one if truncated.
    cut = sorted(kind for kind, flag in last_damaged.items() if flag)
    if cut:
        raise MediaError(
            "truncated", f"{path}: the {cut[0]} data ends in a packet cut short; the file is incomplete", path
        )
    for stream, count in ((vstream, len(v_pts)), (astream, a_count)):
        if stream is not None and stream.frames and count < stream.frames:
            raise MediaError(
                "truncated",
                f"{path}: the {stream.type} stream declares {stream.frames} packets but only {count} are present; "
                "the file is incomplete",
                path,
            )
    if damaged:
        raise MediaError("corrupt", f"{path}: damaged {sorted(damaged)[0]} packets inside the file", path)
    return {"v_pts": v_pts, "v_dur": v_dur, "a_first": a_first, "a_last": a_last, "a_last_dur": a_last_dur,
            "end_pos": end_pos, "biggest": biggest}


def _check_declared_duration(container, vstream, astream, scan: dict, path) -> None:
    """Raise MediaError("truncated") when the streams end well before the duration the container
    declares in its header (Matroska, AVI, FLV ...: formats without per-stream packet counts, so a
    file cut short otherwise demuxes cleanly)."""
    fmt = container.format.name.split(",") if container.format is not None else []
    if container.duration is None or not any(name in _DECLARING_FORMATS for name in fmt):
        return
    if len(container.streams) != sum(s is not None for s in (vstream, astream)):
        return  # another stream (subtitles, data) may be what runs longer
    starts, ends, steps = [], [], [0.0]
    if vstream is not None and scan["v_pts"]:
        tb = float(vstream.time_base)
        pts = np.unique(np.asarray(scan["v_pts"], dtype=np.int64))
        last = int(pts[-1])
        starts.append(float(pts[0]) * tb)
        ends.append((last + (scan["v_dur"].get(last) or 0)) * tb)
        if len(pts) >= 2:
            steps.append(float(np.median(np.diff(pts))) * tb)
    if astream is not None and scan["a_last"] is not None:
        tb = float(astream.time_base)
        starts.append(float(scan["a_first"]) * tb)
        ends.append((scan["a_last"] + (scan["a_last_dur"] or 0)) * tb)
        steps.append(float(scan["a_last_dur"] or 0) * tb)
    if not ends:
        return
    declared = container.duration / av.time_base
    present = max(ends) - min(starts)
    if declared - present > max(_TRUNCATION_SLACK_S, 1.5 * max(steps)):
        try:
            size = os.path.getsize(path)
        except OSError:
            size = 0
        if scan["end_pos"] and size - scan["end_pos"] > max(8192, 2 * scan["biggest"]):
            # Much of the file lies after the last packet the demuxer could read: the data is
            # there but damaged (the demuxer gave up), which is not the same as a cut file.
            raise MediaError(
                "corrupt",
                f"{path}: the streams stop after {present:.3f} s of the {declared:.3f} s declared, at byte "
                f"{scan['end_pos']} of {size}: the data after it is damaged",
                path,
            )
        raise MediaError(
            "truncated",
            f"{path}: the container declares {declared:.3f} s but its streams end after {present:.3f} s; "
            "the file is incomplete (cut short while it was written or copied)",
            path,
        )


def _probe_open(container, path) -> VideoInfo:
    vstream = container.streams.video[0] if container.streams.video else None
    astream = container.streams.audio[0] if container.streams.audio else None
    scan = _packet_scan(container, vstream, astream, path)
    _check_declared_duration(container, vstream, astream, scan, path)

    fps = 0.0
    vfr = False
    video_duration = 0.0
    n_frames = 0
    width = height = 0
    if vstream is not None:
        width, height = vstream.codec_context.width, vstream.codec_context.height
        pts = np.unique(np.asarray(scan["v_pts"], dtype=np.int64))
        n_frames = len(scan["v_pts"])
        tb = float(vstream.time_base)
        if len(pts) >= 2:
            deltas = np.diff(pts)
            median = float(np.median(deltas))
            # Integer time bases round every interval: allow one tick (and 1 %) before calling it VFR.
            tolerance = max(1.5, 0.01 * median)
            vfr = bool(np.any(np.abs(deltas - median) > tolerance))
            last_dur = scan["v_dur"].get(int(pts[-1])) or median
            video_duration = float((pts[-1] - pts[0] + last_dur) * tb)
        elif len(pts) == 1:
            last_dur = scan["v_dur"].get(int(pts[0])) or 0
            rate = vstream.average_rate or vstream.guessed_rate
            video_duration = float(last_dur * tb) if last_dur else (1.0 / float(rate) if rate else 0.0)
        if n_frames and video_duration > 0:
            fps = n_frames / video_duration

    audio_duration = None
    if astream is not None:
        if astream.duration:
            audio_duration = float(astream.duration * astream.time_base)
        elif scan["a_last"] is not None:
            audio_duration = float(
                (scan["a_last"] + (scan["a_last_dur"] or 0) - scan["a_first"]) * astream.time_base
            )

    if container.duration is not None:
        duration = container.duration / av.time_base
    else:
        duration = max(video_duration, audio_duration or 0.0)
    return VideoInfo(
        duration=float(duration),
        fps=float(fps),
        n_frames=int(n_frames),
        width=int(width),
        height=int(height),
        has_video=vstream is not None,
        has_audio=astream is not None,
        audio_sr=int(astream.rate) if astream is not None else 0,
        audio_channels=int(astream.channels) if astream is not None else 0,
        variable_frame_rate=vfr,
        video_duration=video_duration,
        audio_duration=audio_duration,
    )


def probe(path: str | os.PathLike) -> VideoInfo:
    """Describe a media file (header + one demux pass over its packets; nothing is decoded).

    Raises MediaError with reason "missing", "not_media", "corrupt" or "truncated" (the file has
    fewer packets than its header declares, or its last packet is cut short). A missing video or
    audio stream is reported in the fields, not raised.
    """
    container, _ = _open(path)
    try:
        return _probe_open(container, path)
    finally:
        container.close()


# --------------------------------------------------------------------------------------------
# video decoding
# --------------------------------------------------------------------------------------------


def _output_size(info: VideoInfo, max_pixels: int | None, max_side: int | None, path) -> tuple[int, int] | None:
    """Target (width, height) after the optional downscale, or None to keep the coded size."""
    w, h = info.width, info.height
    target = None
    if max_side is not None:
        if int(max_side) < 1:
            raise ValueError(f"max_side must be a positive number of pixels, got {max_side}")
        if max(w, h) > max_side:
            scale = max_side / max(w, h)
            target = (max(1, round(w * scale)), max(1, round(h * scale)))
    if max_pixels is not None and target is None and w * h > max_pixels:
        raise MediaError(
            "too_large",
            f"{path}: {w}x{h} = {w * h} pixels exceeds max_pixels={max_pixels}; "
            "pass max_side=... to downscale while decoding, or raise max_pixels",
            path,
        )
    return target


def _iter_frames(
    path, fps, start_frame, max_pixels, max_side, info: VideoInfo
) -> Iterator[tuple[int, np.ndarray, float]]:
    """Core resampler: yields (output index, RGB frame, source frame time in s since time zero).

    Raises _SeekMissed before yielding anything when a keyframe seek lands after the wanted time.
    """
    rate = float(_as_rate(fps))
    k = int(start_frame)
    if k < 0:
        raise ValueError(f"start_frame must be >= 0, got {start_frame}")
    if not info.has_video:
        raise MediaError("no_video", f"{path} has no video stream (audio only?); use read_audio for its sound", path)
    target = _output_size(info, max_pixels, max_side, path)
    # Instants k / fps before the end of the last frame's presentation interval.
    n_out = max(0, math.ceil((info.video_duration - _TIME_EPS) * rate))
    if k >= n_out:
        return
    nominal = 1.0 / info.fps if info.fps > 0 else 1.0 / rate

    def to_rgb(frame) -> np.ndarray:
        if target is None:
            return frame.to_ndarray(format="rgb24")
        resized = frame.reformat(width=target[0], height=target[1], format="rgb24", interpolation="AREA")
        return resized.to_ndarray()

    container, _ = _open(path)
    try:
        vstream = container.streams.video[0]
        vstream.thread_type = "AUTO"
        tb = float(vstream.time_base)
        t0 = _video_time_zero(container, vstream)
        seeked = k > 0
        if seeked:
            # Jump to the keyframe at or before the first wanted instant; decoding from it is exact.
            container.seek(int(math.floor((t0 + k / rate) / tb)), stream=vstream, backward=True)

        current: tuple[float, object] | None = None  # (start time, frame) of the frame on screen
        decoded = 0
        try:
            for packet in container.demux(vstream):
                for frame in packet.decode():
                    decoded += 1
                    if frame.pts is not None:
                        t = float(frame.pts * tb) - t0
                    else:
                        # No timestamp: assume the nominal interval after the previous frame.
                        t = current[0] + nominal if current is not None else 0.0
                    if current is None:
                        if seeked and t > k / rate + _TIME_EPS:
                            raise _SeekMissed
                        current = (t, frame)
                        continue
                    # Every output instant before this frame starts shows the current frame.
                    rgb = None
                    while k < n_out and k / rate + _TIME_EPS < t:
                        rgb = to_rgb(current[1]) if rgb is None else rgb
                        yield k, rgb, current[0]
                        k += 1
                    if k >= n_out:
                        return
                    current = (t, frame)
        except av.error.FFmpegError as err:
            # probe() already found every declared packet present, so this is damaged data.
            raise MediaError("corrupt", f"{path}: video decoding failed after {decoded} frames ({err})", path) from err
        if current is None:
            raise MediaError("corrupt", f"{path}: the video stream decodes to no frames", path)
        rgb = None
        while k < n_out:
            rgb = to_rgb(current[1]) if rgb is None else rgb
            yield k, rgb, current[0]
            k += 1
    finally:
        container.close()


class _SeekMissed(Exception):
    """Internal: a keyframe seek landed after the wanted time (broken index)."""


def _iter_frames_safe(path, fps, start_frame, max_pixels, max_side, info) -> Iterator[tuple[int, np.ndarray, float]]:
    try:
        yield from _iter_frames(path, fps, start_frame, max_pixels, max_side, info)
    except _SeekMissed:
        # The miss is detected on the first decoded frame, before anything was yielded, so
        # decoding from the start instead (slow but exact) cannot repeat an index.
        for item in _iter_frames(path, fps, 0, max_pixels, max_side, info):
            if item[0] >= start_frame:
                yield item


def iter_video(
    path: str | os.PathLike,
    fps: float = FPS,
    start_frame: int = 0,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Stream ``(index, frame)`` pairs at constant ``fps``, holding one decoded frame at a time.

    Same frame choice as :func:`read_video`; ``start_frame`` seeks to the keyframe before
    ``start_frame / fps`` instead of decoding from the start. Each yielded RGB uint8 ``(H, W, 3)``
    array is fresh, but consecutive indices that show the same source frame share one array.
    Raises MediaError (see :func:`read_video`) when the file is unusable; a truncated file is
    detected by the header/packet check before the first frame is yielded.
    """
    info = probe(path)
    for index, frame, _ in _iter_frames_safe(path, fps, start_frame, max_pixels, max_side, info):
        yield index, frame


def read_video(
    path: str | os.PathLike,
    fps: float = FPS,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a video to RGB frames at a constant ``fps``, choosing source frames by timestamp.

    Output frame ``k`` shows the source frame whose presentation interval ``[t_i, t_{i+1})``
    contains ``k / fps`` (the nearest earlier frame; times since the video time zero). 30, 29.97,
    50 fps and variable-frame-rate sources are therefore converted by dropping/repeating frames,
    and a source already at ``fps`` passes through frame for frame. The number of output frames is
    the number of instants ``k / fps`` before the end of the last source frame
    (``ceil(video_duration * fps)``).

    Args:
        path: any container/codec ffmpeg decodes.
        fps: output frame rate (frames/s).
        max_pixels: guard against huge resolutions: a source with more pixels per frame raises
            MediaError("too_large") unless ``max_side`` downscales it. None disables it.
        max_side: downscale (area filter, aspect kept) so the longer side is at most this many pixels.
        max_bytes: guard on the returned array's size (T*H*W*3 bytes); above it MediaError("too_large")
            suggests :func:`iter_video` or ``max_side``. None disables it.

    Returns:
        frames: RGB uint8 ``(T, H, W, 3)``.
        timestamps: float64 ``(T,)`` seconds, ``k / fps``: the instant each frame represents.

    Raises:
        MediaError: reason "missing", "not_media", "corrupt", "truncated" (fewer packets than
        declared: nothing is returned, so preprocessing can reject the clip), "no_video",
        "too_large".
    """
    return _read_video(path, fps, probe(path), max_pixels, max_side, max_bytes)


def _read_video(path, fps, info: VideoInfo, max_pixels, max_side, max_bytes) -> tuple[np.ndarray, np.ndarray]:
    """read_video with the probe already done (read_av probes once for both streams)."""
    if not info.has_video:
        raise MediaError("no_video", f"{path} has no video stream (audio only?); use read_audio for its sound", path)
    target = _output_size(info, max_pixels, max_side, path)
    rate = float(_as_rate(fps))
    out_w, out_h = target if target is not None else (info.width, info.height)
    n_out = max(0, math.ceil((info.video_duration - _TIME_EPS) * rate))
    if max_bytes is not None and n_out * out_w * out_h * 3 > max_bytes:
        raise MediaError(
            "too_large",
            f"{path}: {n_out} frames of {out_w}x{out_h} need {n_out * out_w * out_h * 3 / 2**30:.1f} GiB "
            f"(max_bytes={max_bytes}); stream it with iter_video, downscale with max_side, or raise max_bytes",
            path,
        )
    frames = np.empty((n_out, out_h, out_w, 3), dtype=np.uint8)
    count = 0
    for index, frame, _ in _iter_frames_safe(path, fps, 0, max_pixels, max_side, info):
        if frame.shape != frames.shape[1:]:
            raise MediaError(
                "corrupt",
                f"{path}: frame {index} decodes to {frame.shape[1]}x{frame.shape[0]} but the stream declares "
                f"{out_w}x{out_h} (resolution changes mid-stream); re-encode it or use iter_video",
                path,
            )
        frames[index] = frame
        count = index + 1
    if count != n_out:
        raise MediaError("truncated", f"{path}: decoded {count} of {n_out} expected frames", path)
    return frames, np.arange(n_out, dtype=np.float64) / rate


# --------------------------------------------------------------------------------------------
# audio decoding
# --------------------------------------------------------------------------------------------

_SAMPLE_SCALE = {"u8": None, "s16": 32768.0, "s32": 2147483648.0, "s64": 9223372036854775808.0, "flt": 1.0, "dbl": 1.0}


def _truncated_or_corrupt(path) -> str:
    """"truncated" when the file ends early (the demux-only check of :func:`probe`), else
    "corrupt": damaged data inside a file whose packets are all there."""
    try:
        probe(path)
    except MediaError as err:
        return "truncated" if err.reason == "truncated" else "corrupt"
    return "corrupt"


def _audio_frame_to_float(frame) -> np.ndarray:
    """Decoded audio frame -> float32 ``(channels, samples)`` in [-1, 1], any sample format."""
    name = frame.format.name
    base = name[:-1] if frame.format.is_planar else name
    if base not in _SAMPLE_SCALE:
        raise MediaError("corrupt", f"unsupported audio sample format {name!r}")
    data = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if not frame.format.is_planar:
        # Packed samples come back as one interleaved row.
        data = data.reshape(-1, channels).T
    if base == "u8":
        return (data.astype(np.float32) - 128.0) / 128.0
    return (data.astype(np.float64) / _SAMPLE_SCALE[base]).astype(np.float32)


def read_audio(path: str | os.PathLike, sr: int | None = SR) -> np.ndarray:
    """Decode the first audio stream to float32 mono at ``sr``, aligned to the video time zero.

    Sample ``n`` of the result is the sound at time ``n / sr`` after the first video frame (files
    without video: after the first audio sample). Steps:

    1. Decode every frame with PyAV. The AAC encoder delay ("priming") is removed by the decoder
       from the container's edit list; each frame is then placed by its timestamp, so audio that
       starts after the video is preceded by zeros, audio before time zero is dropped and gaps are
       zero-filled. Frames whose timestamps are within one time-base tick of the running position
       are concatenated exactly (millisecond time bases, e.g. Matroska, would otherwise overlap).
    2. Trim the tail: AAC decodes to whole 1024-sample frames, so the signal is cut at the stream's
       declared end (``start_time + duration``). Containers that declare no audio duration
       (Matroska/WebM) keep the decoder output, up to one codec frame longer than the original.
    3. Downmix to mono by averaging the channels (no clipping possible).
    4. Resample with ``scipy.signal.resample_poly`` (polyphase, zero-phase FIR): it keeps the time
       alignment exact, unlike a streaming resampler whose filter delay would shift the signal.
       Output length is ``ceil(n * sr / native_sr)``.

    Args:
        path: any container ffmpeg reads (mp4, mkv, wav, m4a, ...).
        sr: output sample rate in Hz; None keeps the stream's native rate.

    Returns:
        float32 ``(N,)`` in [-1, 1].

    Raises:
        MediaError: "missing", "not_media", "corrupt", "truncated", "no_audio".
    """
    # The demux-only check first: a file cut short (or damaged so that demuxing stops early)
    # would otherwise decode to shorter audio without any error (Matroska has no packet counts).
    probe(path)
    container, _ = _open(path)
    try:
        if not container.streams.audio:
            raise MediaError("no_audio", f"{path} has no audio stream", path)
        astream = container.streams.audio[0]
        vstream = container.streams.video[0] if container.streams.video else None
        native = int(astream.rate)
        if sr is not None and int(sr) <= 0:
            raise ValueError(f"sr must be a positive sample rate in Hz or None, got {sr}")
        tb = astream.time_base
        if vstream is not None:
            t0 = _video_time_zero(container, vstream)
        elif astream.start_time is not None:
            t0 = float(astream.start_time * tb)
        else:
            t0 = 0.0
        # One tick of the audio time base in samples, plus one for rounding.
        slack = (float(tb) * native if tb is not None else 0.0) + 1.0

        pieces: list[tuple[int, np.ndarray]] = []
        position = None  # sample index (since time zero) where the next frame would start
        n_packets = 0
        damaged = last_damaged = False
        try:
            for packet in container.demux(astream):
                if packet.size:
                    n_packets += 1
                    last_damaged = packet.is_corrupt
                    damaged = damaged or last_damaged
                for frame in packet.decode():
                    data = _audio_frame_to_float(frame)
                    if frame.pts is not None and tb is not None:
                        stamped = round((float(frame.pts * tb) - t0) * native)
                        if position is None or abs(stamped - position) > slack:
                            position = stamped
                    elif position is None:
                        position = 0
                    pieces.append((position, data.mean(axis=0)))
                    position += data.shape[1]
        except av.error.FFmpegError as err:
            # A decoding error says the data is damaged; whether the file is also cut short is
            # the packet scan's verdict (the packets read so far prove nothing about the rest).
            reason = _truncated_or_corrupt(path)
            raise MediaError(reason, f"{path}: audio decoding failed after {n_packets} packets ({err})", path) from err
        # Same verdicts as probe(): a short last packet or missing packets mean the file was cut.
        if last_damaged or (astream.frames and n_packets < astream.frames):
            raise MediaError(
                "truncated",
                f"{path}: the audio stream declares {astream.frames} packets, {n_packets} are present"
                f"{' and the last is cut short' if last_damaged else ''}; the file is incomplete",
                path,
            )
        if damaged:
            raise MediaError("corrupt", f"{path}: the audio stream has damaged packets", path)
        if not pieces:
            raise MediaError("corrupt", f"{path}: the audio stream decodes to no samples", path)

        end = max(start + len(x) for start, x in pieces)
        if astream.duration:
            start_s = float(astream.start_time * tb) if astream.start_time is not None else 0.0
            end = min(end, round((start_s + float(astream.duration * tb) - t0) * native))
        end = max(end, 0)
        mono = np.zeros(end, dtype=np.float32)
        for start, x in pieces:
            lo, hi = max(start, 0), min(start + len(x), end)
            if hi > lo:
                mono[lo:hi] = x[lo - start : hi - start]
    finally:
        container.close()

    if sr is None or int(sr) == native:
        return mono
    g = math.gcd(int(sr), native)
    out = resample_poly(mono.astype(np.float64), int(sr) // g, native // g)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def read_av(
    path: str | os.PathLike,
    fps: float = FPS,
    sr: int = SR,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    max_side: int | None = None,
    max_bytes: int | None = DEFAULT_MAX_BYTES,
) -> AVClip:
    """Decode video (constant ``fps``, RGB) and audio (mono ``sr``) on one clock.

    The guards behave as in :func:`read_video`. Raises MediaError "no_video" / "no_audio" when
    either stream is missing, plus every reason of :func:`read_video` and :func:`read_audio`.
    """
    info = probe(path)
    if not info.has_video:
        raise MediaError("no_video", f"{path} has no video stream; read_av needs both", path)
    if not info.has_audio:
        raise MediaError("no_audio", f"{path} has no audio stream; read_av needs both", path)
    frames, _ = _read_video(path, fps, info, max_pixels, max_side, max_bytes)
    audio = read_audio(path, sr)
    return AVClip(frames=frames, audio=audio, fps=float(fps), sr=int(sr), info=info)


# --------------------------------------------------------------------------------------------
# remuxing
# --------------------------------------------------------------------------------------------


def remux_with_shifted_audio(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    shift_frames: float,
    fps: float = FPS,
    *,
    audio_bitrate: str = "96k",
) -> Path:
    """Copy ``src`` to ``dst`` with the audio moved in time relative to the untouched video.

    Sign convention: ``shift_frames > 0`` delays the audio (sound comes *later* than the picture),
    ``shift_frames < 0`` advances it. The shift is ``shift_frames / fps`` seconds, rounded to whole
    audio samples, so fractional frames are fine.

    The video packets are copied bit for bit (``-c:v copy``). The audio is decoded and re-encoded
    as AAC at its original rate and channel count, shifted with sample-exact filters: a delay
    inserts silence at the start, an advance drops the leading samples. The audio keeps its
    original duration (trimmed at the end, or padded with silence), so the streams still line up.
    Re-encoding, rather than ``-itsoffset`` with a copied audio stream, is what makes the shift exact:
    a copied AAC stream can only move by container timestamps/edit lists, which decoders honour
    unevenly and which cannot cut inside a 1024-sample frame.

    Raises MediaError ("no_video", "no_audio", and every reason of :func:`probe`) or
    ``encode_failed``. Atomic: on failure ``dst`` is untouched and no temporary file remains.
    """
    rate = float(_as_rate(fps))
    shift_frames = float(shift_frames)
    if not math.isfinite(shift_frames):
        raise ValueError(f"shift_frames must be finite, got {shift_frames}")
    info = probe(src)
    if not info.has_video:
        raise MediaError("no_video", f"{src} has no video stream to keep", src)
    if not info.has_audio:
        raise MediaError("no_audio", f"{src} has no audio stream to shift", src)
    out = _check_destination(dst)
    if Path(src).resolve() == out.resolve():
        raise ValueError("src and dst must differ (the source is read while the copy is written)")
    native = info.audio_sr
    shift = round(shift_frames / rate * native)
    length = round(info.audio_duration * native) if info.audio_duration else None
    if shift > 0:
        chain = f"adelay=delays={shift}S:all=1"
        if length is not None:
            chain += f",atrim=end_sample={length}"
    elif shift < 0:
        chain = f"atrim=start_sample={-shift},asetpts=PTS-STARTPTS"
        if length is not None:
            chain += f",apad=whole_len={length}"
    else:
        chain = "anull"
    with atomic_path(out, make_parents=False) as tmp:
        args = ["-i", str(src), "-map", "0:v:0", "-map", "0:a:0", "-c:v", "copy",
                "-af", chain, "-c:a", "aac", "-b:a", audio_bitrate,
                "-ar", str(native), "-ac", str(info.audio_channels)]
        if out.suffix.lower() in _MOV_SUFFIXES:
            args += ["-movflags", "+faststart"]
        args += [str(tmp)]
        _run_ffmpeg(args, f"remuxing {src} into {out}", output=(tmp, out))
    return out
