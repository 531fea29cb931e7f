"""An HTTP client that behaves like one browser: its own cookies, one connection reopened
whenever the server closes it."""

from __future__ import annotations

import contextlib
import http.client
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlencode

from bench.server import HOST

USER_AGENT = "clinic-mfa-bench/1"
REQUEST_TIMEOUT_S = 15.0  # one HTTP request; a client thread is given this long to notice a stop


@dataclass(frozen=True)
class Reply:
    status: int
    location: str
    body: str


class Browser:
    """One virtual browser: its own cookies and one HTTP connection, reopened whenever the
    server closes it (gunicorn's sync workers close after every response)."""

    note = ""  # added to the cause of a failed request

    def __init__(self, port: int) -> None:
        self._conn = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
        self.cookies: dict[str, str] = {}

    def close(self) -> None:
        self._conn.close()

    def clear_cookies(self) -> None:
        self.cookies.clear()

    def request(
        self, method: str, path: str, form: dict[str, str] | None = None
    ) -> tuple[Reply, float]:
        """The reply and the seconds from sending to having read the whole body."""
        headers = {"User-Agent": USER_AGENT}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        started = time.perf_counter()
        response, data = self._exchange(method, path, body, headers)
        seconds = time.perf_counter() - started
        self._store_cookies(response.msg.get_all("Set-Cookie") or [])
        reply = Reply(response.status, response.getheader("Location") or "", data.decode())
        return reply, seconds

    def _exchange(
        self, method: str, path: str, body: str | None, headers: dict[str, str]
    ) -> tuple[http.client.HTTPResponse, bytes]:
        reused = self._conn.sock is not None
        try:
            return self._send(method, path, body, headers)
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            self._conn.close()
            if not reused:
                raise
        # The server dropped an idle kept-alive connection; browsers send once more, so do we.
        try:
            return self._send(method, path, body, headers)
        except (OSError, http.client.HTTPException):
            self._conn.close()
            raise

    def _send(
        self, method: str, path: str, body: str | None, headers: dict[str, str]
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """One request and its whole body. After a "Connection: close" answer http.client has
        already let go of the socket, and the next request opens a new one by itself."""
        try:
            self._conn.request(method, path, body=body, headers=headers)
            response = self._conn.getresponse()
            return response, response.read()
        except (OSError, http.client.HTTPException):
            self._conn.close()
            raise

    def _store_cookies(self, set_cookies: list[str]) -> None:
        for header in set_cookies:
            pair, _, attributes = header.partition(";")
            name, _, value = pair.strip().partition("=")
            deleted = "max-age=0" in attributes.lower().replace(" ", "")
            if deleted or not value:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value


@contextlib.contextmanager
def browsers(port: int, count: int) -> Iterator[list[Browser]]:
    """One browser per client thread, closed afterwards."""
    made = [Browser(port) for _ in range(count)]
    try:
        yield made
    finally:
        for browser in made:
            browser.close()
