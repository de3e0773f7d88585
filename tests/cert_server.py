"""A real local HTTP server for signing certificates, in a thread of its own, so that an app on
any event loop (each hypothesis example runs its own) can fetch from it."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclass
class Document:
    body: bytes
    status: int = 200


class CertServer:
    """`with CertServer() as server:` serves `server.documents` (path → Document; anything else
    is a 404) and records every path asked for in `server.requested`. `server.pattern` is an
    SNS_CERT_URL_PATTERN allowing its `.pem` files only."""

    def __init__(self) -> None:
        self.documents: dict[str, Document] = {}
        self.requested: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requested.append(self.path)
                document = outer.documents.get(self.path, Document(b"not found", 404))
                self.send_response(document.status)
                self.send_header("Content-Length", str(len(document.body)))
                self.end_headers()
                self.wfile.write(document.body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.pattern = rf"http://127\.0\.0\.1:{self.port}/[^?#]*\.pem"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, body: bytes, status: int = 200) -> str:
        """Serve `body` at `path`; its URL."""
        self.documents[path] = Document(body, status)
        return self.url(path)

    def __enter__(self) -> CertServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
