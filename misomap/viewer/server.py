"""`misomap view PATH`: serve map folders on loopback for the static viewer.

A plain file server with HTTP range requests (the page reads the COGs by byte range, as it does from
object storage); no tile server. Binds 127.0.0.1 only; if the asked port is taken it takes a free one
and says so.
"""

from __future__ import annotations

import errno
import http.server
import logging
import os
import posixpath
import re
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from misomap.core.errors import MisomapError
from misomap.viewer.publish import PAGE

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class ViewerError(MisomapError):
    """Nothing to view at the given path, or the server cannot start."""


@dataclass(frozen=True)
class MapFolders:
    """Where to serve from and the map folders under it (relative, '' for the root itself)."""

    root: Path
    maps: tuple[str, ...]


def find_maps(path: Path) -> MapFolders:
    """PATH itself if it is a map folder, else the map folders directly under it or under `maps/`
    (a run's workdir); a clear error naming PATH if there is none."""
    path = path.resolve()
    if not path.is_dir():
        raise ViewerError(f"{path}: no such folder; give a map folder (with {PAGE}) or a folder of maps")
    if (path / PAGE).is_file():
        return MapFolders(path, ("",))
    found = sorted(str(p.parent.parent.relative_to(path)) for pattern in (f"*/{PAGE}", f"maps/*/{PAGE}")
                   for p in path.glob(pattern))
    if found:
        return MapFolders(path, tuple(found))
    hint = (" (it has COGs but no viewer: rerun `misomap predict` to publish one)"
            if (path / "map.zarr").exists() else "")
    raise ViewerError(f"{path}: no map here{hint}; expected {PAGE} in PATH, in PATH/*/ or in "
                      "PATH/maps/*/, as written by `misomap predict` or `misomap demo`")


def page_urls(base: str, maps: MapFolders) -> list[str]:
    """One viewer URL per map; with two or more maps, also the first two side by side."""
    urls = [f"{base}/{m + '/' if m else ''}{PAGE.rsplit('/', 1)[0]}/" for m in maps.maps]
    if len(maps.maps) >= 2:
        other = posixpath.relpath(maps.maps[1] or ".", maps.maps[0] or ".")
        urls.append(f"{urls[0]}?compare=../{other}/")  # relative to the page in <map>/viewer/
    return urls


class RangeRequestHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with single byte-range requests (206 / 416), quiet logging, no caching.

    Only regular files whose real path (symlinks resolved) lies inside the served folder are
    answered; a folder answers with its index.html or 404, never with a listing."""

    def translate_path(self, path: str) -> str:
        """The file asked for, or '' when it resolves outside the served folder (a symlink or `..`
        escaping it): the caller then answers 404."""
        local = super().translate_path(path)
        root = os.path.realpath(self.directory)
        real = os.path.realpath(local)
        if real != root and not real.startswith(root + os.sep):
            log.warning("refused %s: it resolves outside the served folder", path.split("?", 1)[0])
            return ""
        return local

    def list_directory(self, path: str | os.PathLike[str]) -> None:
        """No directory listings: a folder without index.html is not found."""
        self.send_error(404, "File not found")

    def end_headers(self) -> None:
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        spec = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not path:
            self.send_error(404, "File not found")
            return
        if spec is None or not os.path.isfile(path):
            super().do_GET()
            return
        match = _RANGE.match(spec.strip())
        if match is None or match.groups() == ("", ""):
            super().do_GET()  # multiple or malformed ranges: the whole file is a valid answer
            return
        size = os.path.getsize(path)
        first, last = match.groups()
        if first == "":
            start, end = max(0, size - int(last)), size - 1
        else:
            start, end = int(first), min(size - 1, int(last)) if last else size - 1
        if start >= size or start > end:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        with open(path, "rb") as fh:
            fh.seek(start)
            body = fh.read(end - start + 1)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def make_server(root: Path, port: int) -> http.server.ThreadingHTTPServer:
    """A server for `root` on 127.0.0.1:`port`, or if that is in use on the next free one (logged)."""
    handler = partial(RangeRequestHandler, directory=str(root))
    for candidate in range(port, min(port + 10, 65536)):
        try:
            server = http.server.ThreadingHTTPServer((HOST, candidate), handler)
            break
        except OSError as err:
            if err.errno != errno.EADDRINUSE:
                raise ViewerError(f"cannot serve on {HOST}:{candidate}: {err}") from None
    else:
        server = http.server.ThreadingHTTPServer((HOST, 0), handler)  # any free port
    if server.server_address[1] != port:
        log.warning("port %d is in use; serving on port %d instead", port, server.server_address[1])
    return server
