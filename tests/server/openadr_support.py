"""For the OpenADR tests: the served app with two tenants, clients made through the API,
tokens, and a callback server on 127.0.0.1 that records what the VTN POSTs to it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from .conftest import PASSWORD, World

BASE = "/openadr3/3.0.1"


def until(condition, timeout_s: float = 10.0) -> None:
    """Wait for `condition` (a poll, never a guessed sleep), failing after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


@contextmanager
def admin(base: str, email: str) -> Iterator[httpx.Client]:
    """An httpx client logged in as `email` (cookie and CSRF token)."""
    with httpx.Client(base_url=base, timeout=10) as client:
        answer = client.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        client.headers["X-CSRF-Token"] = answer.headers["X-CSRF-Token"]
        yield client


def make_client(admin_client: httpx.Client, role: str, name: str) -> dict:
    answer = admin_client.post("/api/v1/openadr/clients", json={"role": role, "name": name})
    assert answer.status_code == 201, answer.text
    return answer.json()


def token(base: str, made: dict, *, basic: bool = True) -> str:
    """A bearer token, asked as OAuth2 libraries ask (HTTP Basic), or with the secret in
    the form (the spec's clientCredentialRequest)."""
    form = {"grant_type": "client_credentials"}
    auth = None
    if basic:
        auth = (made["client_id"], made["client_secret"])
    else:
        form |= {"client_id": made["client_id"], "client_secret": made["client_secret"]}
    answer = httpx.post(f"{base}{BASE}/auth/token", data=form, auth=auth, timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0
    return body["access_token"]


def vtn(base: str, bearer_token: str) -> httpx.Client:
    return httpx.Client(
        base_url=base + BASE, timeout=10, headers={"Authorization": f"Bearer {bearer_token}"}
    )


@dataclass
class Callbacks:
    """What the VTN POSTed: each request's path, headers and JSON body."""

    url: str
    received: list[dict] = field(default_factory=list)


@contextmanager
def callback_server() -> Iterator[Callbacks]:
    calls: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"null")
            calls.append({"path": self.path, "headers": dict(self.headers), "body": body})
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Callbacks(f"http://127.0.0.1:{server.server_address[1]}/oadr", calls)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


__all__ = ["BASE", "Callbacks", "World", "admin", "callback_server", "make_client", "token",
           "until", "vtn"]  # fmt: skip
