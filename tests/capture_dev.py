"""The product Capture recipe, adapted to run from the development venv under the test runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import dev_recipe, write_recipe

NAME = "com.ggvision.test.CaptureDev"


def capture_dev_recipe(out_dir: Path, cameras: dict[str, Any] | None = None, **config: Any) -> Path:
    """Same recipe and code as com.ggvision.Capture; only the name, Run (no Runtime venv) and cameras differ."""
    doc = dev_recipe("com.ggvision.Capture", NAME)
    default = doc["ComponentConfiguration"]["DefaultConfiguration"]
    if cameras is not None:
        default["cameras"] = cameras
    default.update(config)
    acl = default["accessControl"]
    acl["aws.greengrass.SecretManager"] = {"test:secrets:1": {
        "operations": ["aws.greengrass#GetSecretValue"],
        "resources": ["arn:aws:secretsmanager:us-east-1:000000000000:secret:camera-1"]}}
    return write_recipe(doc, out_dir)


def synthetic_video(out: Path, parts: list[tuple[int, int, float]], fps: int = 10, seed: int = 3,
                    objects: int = 4) -> Path:
    """An MPEG-TS file of the synthetic scene (H.264, a keyframe every second) in `parts` of (width, height,
    seconds) played one after the other: one scene, rendered at the largest size and scaled to each part's, so
    a camera that changes resolution mid-stream keeps showing the same objects. Made with PyAV and ffmpeg."""
    import subprocess

    import av
    import cv2

    from ggvision.sim.scenes import SyntheticScene

    big = max(parts, key=lambda p: p[0] * p[1])
    scene = SyntheticScene(big[0], big[1], fps, seed, objects)
    index = 0
    pieces = []
    for n, (w, h, seconds) in enumerate(parts):
        piece = out.with_name(f"{out.stem}-{n}.ts")
        with av.open(str(piece), "w") as box:
            stream = box.add_stream("libx264", rate=fps)
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"g": str(fps), "bf": "0", "preset": "ultrafast", "tune": "zerolatency"}
            for _ in range(int(seconds * fps)):
                img, _ = scene.render(index)
                index += 1
                frame = av.VideoFrame.from_ndarray(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA),
                                                   format="bgr24")
                for packet in stream.encode(frame):
                    box.mux(packet)
            for packet in stream.encode():
                box.mux(packet)
        pieces.append(piece)
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{p}'\n" for p in pieces))
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy",
                    str(out)], check=True, timeout=60)
    return out


def with_garbage(video: Path, out: Path, at: float, size: int, seed: int = 1) -> Path:
    """A copy of `video` with `size` random bytes written over it from `at` (a share of its length): a camera
    that sends garbage for a while (decoding errors, lost sync) and then a good stream again."""
    import random

    data = bytearray(video.read_bytes())
    start = int(len(data) * at)
    data[start:start + size] = random.Random(seed).randbytes(size)
    out.write_bytes(bytes(data))
    return out
