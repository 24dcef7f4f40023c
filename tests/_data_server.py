"""A small HTTP file server on 127.0.0.1 for the download tests, and a way to point steerlab.data at it.

`FileServer` serves a folder (GET, with ``Range: bytes=N-``), logs every request, and can drop the
connection halfway through a file the first time it is asked for (to test resuming). `offline_data`
makes `steerlab.data` see no local data root, a fresh cache, and (optionally) a test sources table.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import steerlab.data.download as download_module
import steerlab.data.root as root_module
import steerlab.data.sources as sources_module

HOST = "raw.githubusercontent.com"
REPO, COMMIT = "example/evals", "c0ffee"


class FileServer:
    """Serve ``folder`` over HTTP on 127.0.0.1 (port chosen by the OS) in a background thread."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.drop_once: set[str] = set()  # paths whose first GET stops halfway
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_GET(self):  # noqa: N802 (http.server's name)
                rng = self.headers.get("Range")
                server.requests.append((self.path, rng))
                path = server.folder / self.path.lstrip("/")
                if not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                if self.path in server.drop_once:
                    server.drop_once.discard(self.path)
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1)) if rng else 0
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


def offline_data(monkeypatch, tmp_path: Path, table: dict | None = None) -> Path:
    """No local data root, an empty cache under ``tmp_path``, no mirror, and optionally a test sources table.

    Returns the cache folder (``$STEERLAB_CACHE/data``).
    """
    monkeypatch.delenv("STEERLAB_DATA", raising=False)
    monkeypatch.delenv("STEERLAB_DATA_MIRROR", raising=False)
    monkeypatch.delenv("STEERLAB_DATA_DOWNLOAD", raising=False)
    monkeypatch.setenv("STEERLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(root_module, "_candidates", lambda: [tmp_path / "no-data-root"])
    monkeypatch.setattr(download_module, "_BACKOFF", 0.0)
    if table is not None:
        path = tmp_path / "sources.json"
        path.write_text(json.dumps({"format": 1, "sources": table}))
        monkeypatch.setattr(sources_module, "_SOURCES_FILE", path)
    return tmp_path / "cache" / "data"


def url_of(rel_in_repo: str) -> str:
    return f"https://{HOST}/{REPO}/{COMMIT}/{rel_in_repo}"


def fixture_tree(served: Path, files: dict[str, bytes], *, tamper: dict[str, bytes] | None = None) -> dict:
    """Write ``files`` (data-root path -> bytes) where a mirror serves them, and return a sources table.

    The folder ``anthropic-evals/`` maps onto the repository root, as in the real table. ``tamper`` serves
    other bytes for some paths than the table's checksums describe.
    """
    entries = {}
    for rel, raw in files.items():
        in_repo = rel.split("/", 1)[1]
        target = served / HOST / REPO / COMMIT / in_repo
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((tamper or {}).get(rel, raw))
        entries[rel] = {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest(), "url": url_of(in_repo)}
    return {"anthropic-evals": {"title": "test evals", "repo": REPO, "commit": COMMIT, "license": "CC-BY-4.0",
                                "original": None, "files": entries}}  # fmt: skip
