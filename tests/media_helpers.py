"""Tiny test media (H.264 + AAC mp4s, an HLS set with separate video and audio) written with
PyAV, and a request log for the loopback server that can also fail requests on purpose.

``Site`` gives each test its own folder on one module-wide server: the conftest server takes
0.5 s to shut down (``serve_forever``'s poll interval), which adds up over many small tests."""

from __future__ import annotations

import collections
import functools
import http.server
import re
import threading
import time
from pathlib import Path

import numpy as np


def _encode(path: Path, fmt: str | None, seconds: float, size: tuple[int, int] | None, audio: bool, fps: int) -> Path:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as out:
        video = out.add_stream("h264", rate=fps) if size else None
        if video is not None:
            video.width, video.height = size
            video.pix_fmt = "yuv420p"
            video.options = {"preset": "ultrafast"}
        sound = out.add_stream("aac", rate=16000) if audio else None
        if sound is not None:
            sound.layout = "mono"
        if video is not None:
            for i in range(int(seconds * fps)):
                pixels = np.full((size[1], size[0], 3), (i * 23) % 256, np.uint8)
                for packet in video.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                    out.mux(packet)
            out.mux(video.encode())
        if sound is not None:
            rate, total = 16000, int(seconds * 16000)
            for start in range(0, total, 1024):
                t = np.arange(start, min(start + 1024, total)) / rate
                frame = av.AudioFrame.from_ndarray((0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None],
                                                   format="fltp", layout="mono")
                frame.sample_rate, frame.pts = rate, start
                for packet in sound.encode(frame):
                    out.mux(packet)
            out.mux(sound.encode())
    return path


def make_mp4(path: Path, seconds: float = 2.0, width: int = 160, height: int = 120, audio: bool = True) -> Path:
    """A small H.264 (+ AAC) mp4 whose grey level changes every frame."""
    return _encode(Path(path), "mp4", seconds, (width, height), audio, fps=10)


def make_hls(folder: Path, seconds: float = 2.0) -> Path:
    """master.m3u8 with two video-only renditions (declared 480p and 720p) and one audio rendition."""
    folder = Path(folder)
    _encode(folder / "v480.ts", "mpegts", seconds, (160, 120), False, fps=10)
    _encode(folder / "v720.ts", "mpegts", seconds, (320, 240), False, fps=10)
    _encode(folder / "audio.ts", "mpegts", seconds, None, True, fps=10)
    for name in ("v480", "v720", "audio"):
        (folder / f"{name}.m3u8").write_text(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
            f"#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:{seconds:.1f},\n{name}.ts\n#EXT-X-ENDLIST\n")
    (folder / "master.m3u8").write_text(
        "#EXTM3U\n"
        '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="English",LANGUAGE="en",DEFAULT=YES,AUTOSELECT=YES,URI="audio.m3u8"\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=200000,RESOLUTION=640x480,CODECS="avc1.42c00d,mp4a.40.2",AUDIO="aud"\n'
        "v480.m3u8\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=800000,RESOLUTION=1280x720,CODECS="avc1.42c01f,mp4a.40.2",AUDIO="aud"\n'
        "v720.m3u8\n")
    return folder / "master.m3u8"


class RequestLog:
    """Counts requests per path on a StaticServer and plays scripted failures.

    ``fail["/v.mp4"] = [503, 503]`` answers the next two requests for /v.mp4 with 503;
    ``delay["/x"] = [1.0]`` holds the next request for /x for one second before answering.
    """

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, str]] = collections.Counter()
        self.fail: dict[str, list[int]] = {}
        self.delay: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def gets(self, path: str) -> int:
        return self.counts[("GET", path)]

    def _before(self, handler: http.server.BaseHTTPRequestHandler) -> bool:
        """Record the request; True when a scripted failure already answered it."""
        path = handler.path.split("?")[0]
        with self.lock:
            self.counts[(handler.command, path)] += 1
            code = self.fail[path].pop(0) if self.fail.get(path) else None
            pause = self.delay[path].pop(0) if self.delay.get(path) else None
        if pause:
            time.sleep(pause)
        if code:
            handler.send_error(code)
            return True
        return False


def instrument(server) -> RequestLog:
    """Swap the conftest StaticServer's handler for one that logs (and can fail) requests."""
    requests = RequestLog()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 - signature fixed by the base class
            pass

        def do_GET(self):
            if not requests._before(self):
                super().do_GET()

        def do_HEAD(self):
            if not requests._before(self):
                super().do_HEAD()

    server.httpd.RequestHandlerClass = functools.partial(Handler, directory=str(server.root))
    return requests


class Site:
    """One test's folder on a shared StaticServer, with a fresh request log."""

    def __init__(self, server, name: str):
        self.server, self.prefix = server, re.sub(r"[^A-Za-z0-9_-]+", "_", name)
        self.root = Path(server.root) / self.prefix
        self.root.mkdir(parents=True, exist_ok=True)
        self.requests = instrument(server)

    def url(self, name: str = "") -> str:
        return self.server.url(f"{self.prefix}/{name}")

    def gets(self, name: str) -> int:
        return self.requests.gets(f"/{self.prefix}/{name}")

    def fail(self, name: str, codes: list[int]) -> None:
        self.requests.fail[f"/{self.prefix}/{name}"] = list(codes)

    def delay(self, name: str, seconds: float) -> None:
        self.requests.delay[f"/{self.prefix}/{name}"] = [seconds]
