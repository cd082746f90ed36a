"""What each codec's public quality name means: the one table every op encodes from.

    video_args("libx264", "standard")  -> -c:v libx264 -preset veryfast -crf 21 -pix_fmt yuv420p
    vp9_args("standard", alpha=True)   -> libvpx-vp9 at crf 32, yuva420p, alpha_mode=1
    PRORES_4444_ARGS, AAC_ARGS, OPUS_ARGS

`quality` is `draft | standard | high` in every op's params; the same name gives the same encoder
settings in every op (a `standard` webm from `render` and from `overlay` are both crf 32). Which H.264/HEVC
encoder runs (NVENC or the CPU one) is decided per job in `reelforge.media.encoders`.
"""

from __future__ import annotations

from typing import Literal

Quality = Literal["draft", "standard", "high"]
QUALITIES: tuple[Quality, ...] = ("draft", "standard", "high")
VideoCodec = Literal["h264", "hevc"]

CPU_ENCODERS: dict[VideoCodec, str] = {"h264": "libx264", "hevc": "libx265"}
NVENC_ENCODERS: dict[VideoCodec, str] = {"h264": "h264_nvenc", "hevc": "hevc_nvenc"}
CODEC_OF: dict[str, VideoCodec] = {"libx264": "h264", "h264_nvenc": "h264", "libx265": "hevc", "hevc_nvenc": "hevc"}

# x264/x265: CRF with a preset that fits 2-core workers; NVENC: constant quality (-cq with -b:v 0) on the
# p1..p7 preset scale, chosen to look like the CRF of the same name.
QUALITY_ARGS: dict[str, dict[Quality, tuple[str, ...]]] = {
    "libx264": {
        "draft": ("-preset", "ultrafast", "-crf", "28"),
        "standard": ("-preset", "veryfast", "-crf", "21"),
        "high": ("-preset", "medium", "-crf", "18"),
    },
    "libx265": {
        "draft": ("-preset", "ultrafast", "-crf", "30"),
        "standard": ("-preset", "veryfast", "-crf", "25"),
        "high": ("-preset", "medium", "-crf", "22"),
    },
    "h264_nvenc": {
        "draft": ("-preset", "p2", "-rc", "vbr", "-cq", "28", "-b:v", "0"),
        "standard": ("-preset", "p4", "-rc", "vbr", "-cq", "23", "-b:v", "0"),
        "high": ("-preset", "p6", "-rc", "vbr", "-cq", "19", "-b:v", "0"),
    },
    "hevc_nvenc": {
        "draft": ("-preset", "p2", "-rc", "vbr", "-cq", "30", "-b:v", "0"),
        "standard": ("-preset", "p4", "-rc", "vbr", "-cq", "25", "-b:v", "0"),
        "high": ("-preset", "p6", "-rc", "vbr", "-cq", "21", "-b:v", "0"),
    },
}
# hvc1 tag so Apple players accept HEVC in MP4
_CODEC_EXTRA: dict[VideoCodec, tuple[str, ...]] = {"h264": (), "hevc": ("-tag:v", "hvc1")}

# VP9 (webm, with or without alpha): constant quality. These are overlay's values: its alpha-edge test
# was measured at crf 32 (render used 40/33/28 until both read this table).
VP9_CRF: dict[Quality, int] = {"draft": 38, "standard": 32, "high": 24}
# realtime + cpu-used 8 + row-mt: several times faster than libvpx's default "good" on 2-core workers
_VP9_SPEED = ("-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1")

# ProRes 4444 (profile 4) keeps alpha and is visually lossless at every quality name, so it has no table
PRORES_4444_ARGS: tuple[str, ...] = ("-c:v", "prores", "-profile:v", "4", "-pix_fmt", "yuva444p10le",
                                     "-vendor", "apl0")

AAC_ARGS: tuple[str, ...] = ("-c:a", "aac", "-b:a", "192k")
OPUS_ARGS: tuple[str, ...] = ("-c:a", "libopus", "-b:a", "128k")


def video_args(encoder: str, quality: Quality = "standard") -> tuple[str, ...]:
    """`-c:v <encoder>` + its quality settings + yuv420p for an H.264/HEVC encoder (pure; table-tested)."""
    if encoder not in QUALITY_ARGS:
        raise ValueError(f"unknown encoder {encoder!r}")
    return ("-c:v", encoder, *QUALITY_ARGS[encoder][quality], "-pix_fmt", "yuv420p", *_CODEC_EXTRA[CODEC_OF[encoder]])


def vp9_args(quality: Quality = "standard", *, alpha: bool = False) -> tuple[str, ...]:
    """libvpx-vp9 at the quality's CRF; `alpha` keeps the alpha plane (yuva420p, tagged for players)."""
    pix = ("-pix_fmt", "yuva420p", "-metadata:s:v:0", "alpha_mode=1") if alpha else ("-pix_fmt", "yuv420p")
    return ("-c:v", "libvpx-vp9", "-crf", str(VP9_CRF[quality]), "-b:v", "0", *_VP9_SPEED, *pix)


# A picture that a later encode decodes and encodes again (a build's loop period or Ken Burns images under
# burned captions or a talking head) is an intermediate: x264's fastest preset at a CRF below the output's.
# Measured on one thread at 1080p: the loop period of a 10 s clip (forward + reversed) 4.4 s against 9.3 s
# for `standard` (grainy footage 8.1 vs 15.3 s), 48-55 dB PSNR against the source instead of 44-45, 2-3x the
# bytes, and faster to decode; Ken Burns of a grainy still 2.4x faster to encode, 52 vs 50 dB. CRF 16 was
# tried first: no faster to make, and its larger stream made the compose's own encode slower (what it keeps
# of the grain costs bits there), so the whole images build gained 4-6% instead of 9-10%.
MEZZANINE_CRF: dict[Quality, int] = {"draft": 28, "standard": 20, "high": 16}


def mezzanine_x264_args(quality: Quality) -> tuple[str, ...]:
    """libx264 arguments for an intermediate that will be re-encoded (fast, near-lossless, yuv420p)."""
    return ("-c:v", "libx264", "-preset", "ultrafast", "-crf", str(MEZZANINE_CRF[quality]), "-pix_fmt", "yuv420p")


# libx264 at constant QP for renders that may be split into time chunks (docs/CHUNKED.md): CRF's rate
# control carries state from frame to frame, so a chunk encoded on its own differs (about 44 dB PSNR at
# 320x180) from the same frames in one long encode; at constant QP each frame's coding depends only on its
# own closed GOP, and a chunked render is bit-identical in picture to an unchunked one. QP = the CRF of the
# same name + 2: about the same size and PSNR (measured on the chunked-render test timeline).
CHUNKABLE_QP: dict[Quality, int] = {"draft": 30, "standard": 23, "high": 20}


def chunkable_x264_args(quality: Quality, gop: int, threads: int) -> tuple[str, ...]:
    """libx264 at the quality's constant QP, a keyframe every `gop` frames, a fixed thread count (x264's
    output depends on it): the same arguments in every chunk and in the unchunked render."""
    preset = QUALITY_ARGS["libx264"][quality][1]
    return ("-c:v", "libx264", "-preset", preset, "-qp", str(CHUNKABLE_QP[quality]), "-pix_fmt", "yuv420p",
            *gop_args(gop), "-threads", str(threads))


def gop_args(frames: int) -> tuple[str, ...]:
    """A keyframe (closed GOP: x264's default) every `frames` frames and nowhere else, so time chunks cut
    on multiples of it join by stream copy (docs/CHUNKED.md)."""
    return ("-g", str(frames), "-keyint_min", str(frames), "-sc_threshold", "0",
            "-force_key_frames", f"expr:eq(mod(n,{frames}),0)")


# what an encode uses when no encoder was chosen for the job (pure planners' default, tests)
DEFAULT_VIDEO_ARGS: tuple[str, ...] = video_args("libx264", "standard")
