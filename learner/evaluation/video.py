"""Videos of evaluation episodes: what the agent saw, as MP4 (ffmpeg) or GIF (Pillow)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path
from typing import Optional, Sequence

import numpy as np


def observation_frame(obs: np.ndarray, scale: int = 4) -> np.ndarray:
    """What the agent saw as an RGB image ``[H*scale, W*scale, 3]`` uint8 (nearest-neighbour).

    ``[3, H, W]`` (ProcGen) is shown as colour; ``[K, H, W]`` frame stacks (Atari) show
    their newest frame in grey; ``[H, W]`` is grey.
    """
    x = np.asarray(obs)
    if x.ndim == 3 and x.shape[0] == 3:
        img = x.transpose(1, 2, 0)                              # [H, W, 3]
    elif x.ndim == 3:
        img = np.repeat(x[-1][:, :, None], 3, axis=2)           # [H, W, 3]
    elif x.ndim == 2:
        img = np.repeat(x[:, :, None], 3, axis=2)               # [H, W, 3]
    else:
        raise ValueError(f"cannot draw an observation of shape {list(x.shape)} as an image")
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    if scale > 1:
        img = img.repeat(scale, axis=0).repeat(scale, axis=1)   # [H*s, W*s, 3]
    return np.ascontiguousarray(img)


def can_record(obs_shape: Sequence[int]) -> bool:
    return len(obs_shape) in (2, 3)


def find_ffmpeg() -> Optional[str]:
    """An ffmpeg executable: $IMAGEIO_FFMPEG_EXE, imageio-ffmpeg's binary, or ffmpeg on PATH.

    imageio-ffmpeg 0.3 cannot be imported without ``pkg_resources`` (gone from recent
    setuptools), so its bundled binary is also looked up by path.
    """
    exe = os.environ.get("IMAGEIO_FFMPEG_EXE")
    if exe:
        return exe
    try:
        import imageio_ffmpeg
        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception:
        pass
    spec = importlib.util.find_spec("imageio_ffmpeg")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            for p in sorted(Path(loc, "binaries").glob("ffmpeg*")):
                if p.is_file() and os.access(p, os.X_OK):
                    return str(p)
    return shutil.which("ffmpeg")


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: int = 20) -> Path:
    """Write RGB frames ``[H, W, 3]`` uint8 as MP4 (H.264 through ffmpeg) or GIF (Pillow)."""
    path = Path(path)
    if not frames:
        raise ValueError(f"no frames to write to {path}")
    h, w = frames[0].shape[:2]
    if path.suffix == ".gif":
        from PIL import Image
        images = [Image.fromarray(f) for f in frames]
        # GIF stores durations in 1/100 s; identical consecutive frames are merged by Pillow,
        # their durations summed, so the playing time stays len(frames) / fps.
        images[0].save(path, save_all=True, append_images=images[1:], duration=1000.0 / fps, loop=0)
        return path
    if path.suffix != ".mp4":
        raise ValueError(f"unknown video format {path.suffix!r}; use .mp4 or .gif")
    exe = find_ffmpeg()
    if exe is None:
        raise RuntimeError("no ffmpeg found for MP4 output (install imageio-ffmpeg) - use --video-format gif")
    if h % 2 or w % 2:
        raise ValueError(f"MP4 frames need even sizes, got {w}x{h}")
    cmd = [exe, "-y", "-loglevel", "error", "-f", "rawvideo", "-vcodec", "rawvideo", "-pix_fmt", "rgb24",
           "-s", f"{w}x{h}", "-r", str(fps), "-i", "-", "-an", "-vcodec", "libx264", "-pix_fmt", "yuv420p",
           "-crf", "18", "-r", str(fps), str(path)]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(b"".join(np.ascontiguousarray(f, dtype=np.uint8).tobytes() for f in frames))
    if proc.returncode != 0:
        raise RuntimeError(f"ffmpeg failed writing {path}: {err.decode(errors='replace').strip()[:300]}")
    return path


def default_video_format() -> str:
    """``mp4`` where an ffmpeg is available, else ``gif``."""
    return "mp4" if find_ffmpeg() is not None else "gif"

