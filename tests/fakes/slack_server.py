"""A fake Slack on 127.0.0.1: the Web API methods the bot calls, response URLs, file uploads, and
a Socket Mode WebSocket. The real `slack_sdk.WebClient(base_url=…)` talks to it over HTTP.

It answers as Slack does: HTTP 200 with `{"ok": false, "error": …}` for API errors, 429 with
`Retry-After` for rate limits, `not_authed` / `invalid_auth` for a missing or wrong token, and
`missing_scope` (with `needed` / `provided`) when the bot token lacks the method's scope. The
bot token's scopes are those of `manifest.yml` unless a test says otherwise, so a bot that needs
more scopes than it declares fails here. `users.info` shows a profile email only with
`users:read.email`, as Slack does.

Every call is recorded (`calls`, `calls_to(method)`); so are posts to response URLs (`hooks`) and
uploaded file bytes (`uploads`). `fail_next(method, error, status)` makes the next call fail.

Socket Mode: `apps.connections.open` (app-level token) returns a `ws://` URL of this server; the
WebSocket (RFC 6455, text frames, ping/pong, close) greets with `hello`; `push(type, payload)`
sends an envelope and `wait_ack(envelope_id)` returns the client's acknowledgement.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import json
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

MANIFEST = Path(__file__).resolve().parents[2] / "manifest.yml"
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# The scope each method needs (None: any valid bot token), as Slack's method reference says.
METHOD_SCOPES: dict[str, str | None] = {
    "auth.test": None,
    "chat.postMessage": "chat:write",
    "chat.postEphemeral": "chat:write",
    "chat.update": "chat:write",
    "views.publish": None,
    "views.open": None,
    "views.update": None,
    "users.info": "users:read",
    "users.lookupByEmail": "users:read.email",
    "conversations.open": "im:write",
    "files.getUploadURLExternal": "files:write",
    "files.completeUploadExternal": "files:write",
}


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Slack's v0 request signature: HMAC-SHA256 of `v0:<timestamp>:<body>` with the signing secret."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def manifest_bot_scopes() -> tuple[str, ...]:
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    return tuple(manifest["oauth_config"]["scopes"]["bot"])


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    token: str | None
    at: float = field(default_factory=time.time)


class SlackApiFailure(Exception):
    def __init__(self, error: str, status: int = 200, headers: dict[str, str] | None = None, **extra):
        super().__init__(error)
        self.error, self.status, self.headers, self.extra = error, status, headers or {}, extra


class FakeSlack:
    """The fake Slack. Use as a context manager or call `start()` / `stop()`."""

    def __init__(self, *, bot_token: str = "xoxb-cadence-test", app_token: str = "xapp-1-cadence-test",
                 scopes: tuple[str, ...] | None = None, team_id: str = "TCADENCE", bot_user_id: str = "UCADENCEBOT"):
        self.bot_token, self.app_token = bot_token, app_token
        self.scopes = tuple(scopes) if scopes is not None else manifest_bot_scopes()
        self.team_id, self.bot_user_id = team_id, bot_user_id
        self.users: dict[str, dict] = {}
        self.calls: list[Call] = []
        self.hooks: list[tuple[str, dict]] = []  # (hook id, JSON body) posted to response URLs
        self.uploads: dict[str, bytes] = {}
        self.shared_files: list[dict] = []  # files.completeUploadExternal: {"id", "title", "channel_id"}
        self._pending_files: dict[str, dict] = {}
        self._failures: dict[str, list[SlackApiFailure]] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._sockets: list[_WebSocket] = []
        self._acks: dict[str, dict] = {}
        self._acks_changed = threading.Condition(self._lock)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "FakeSlack":
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-slack",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.close_sockets()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "FakeSlack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def root(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        return f"{self.root}/api/"

    # -- test control --------------------------------------------------------------------------
    def add_user(self, user_id: str, email: str | None, name: str | None = None, *, is_bot: bool = False,
                 deleted: bool = False) -> None:
        profile = {"real_name": name or user_id, "display_name": name or user_id}
        if email:
            profile["email"] = email
        self.users[user_id] = {"id": user_id, "team_id": self.team_id, "name": (name or user_id).lower(),
                               "real_name": name or user_id, "is_bot": is_bot, "deleted": deleted, "profile": profile}

    def response_url(self) -> str:
        return f"{self.root}/hooks/{next(self._ids)}"

    def trigger_id(self) -> str:
        return f"{next(self._ids)}.{int(time.time())}.fake"

    def fail_next(self, method: str, error: str = "ratelimited", status: int | None = None,
                  retry_after: int | None = None) -> None:
        status = status if status is not None else (429 if error == "ratelimited" else 200)
        headers = {"Retry-After": str(retry_after if retry_after is not None else 1)} if status == 429 else {}
        with self._lock:
            self._failures.setdefault(method, []).append(SlackApiFailure(error, status, headers))

    def calls_to(self, method: str) -> list[dict]:
        with self._lock:
            return [c.params for c in self.calls if c.method == method]

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self.hooks.clear()

    def wait_for(self, predicate, timeout: float = 5.0) -> Any:
        """Poll `predicate()` until it returns something truthy (the bot works after acking)."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.01)

    # -- Web API -------------------------------------------------------------------------------
    def handle_api(self, method: str, params: dict[str, Any], token: str | None) -> dict:
        with self._lock:
            self.calls.append(Call(method, params, token))
            queued = self._failures.get(method)
            failure = queued.pop(0) if queued else None
        if failure is not None:
            raise failure
        if method == "apps.connections.open":
            if token != self.app_token:
                raise SlackApiFailure("invalid_auth" if token else "not_authed")
            port = self._server.server_address[1]
            return {"ok": True, "url": f"ws://127.0.0.1:{port}/link/?ticket={next(self._ids)}"}
        if not token:
            raise SlackApiFailure("not_authed")
        if token != self.bot_token:
            raise SlackApiFailure("invalid_auth")
        if method not in METHOD_SCOPES:
            raise SlackApiFailure("unknown_method")
        needed = METHOD_SCOPES[method]
        if needed is not None and needed not in self.scopes:
            raise SlackApiFailure("missing_scope", needed=needed, provided=",".join(self.scopes))
        return getattr(self, "_" + method.replace(".", "_"))(params)

    def _require(self, params: dict, *names: str) -> None:
        for name in names:
            if params.get(name) in (None, ""):
                raise SlackApiFailure("invalid_arguments",
                                      response_metadata={"messages": [f"[ERROR] missing required field: {name}"]})

    def _user(self, user_id: str) -> dict:
        user = self.users.get(user_id)
        if user is None:
            raise SlackApiFailure("user_not_found")
        return user

    def _check_blocks(self, blocks: Any, limit: int) -> None:
        if blocks is None:
            return
        if not isinstance(blocks, list) or len(blocks) > limit:
            raise SlackApiFailure("invalid_blocks")
        for block in blocks:
            if not isinstance(block, dict) or "type" not in block:
                raise SlackApiFailure("invalid_blocks")
            for element in block.get("elements", []) if block["type"] == "actions" else []:
                url = element.get("url")
                if url is not None and not str(url).startswith(("http://", "https://")):
                    raise SlackApiFailure("invalid_blocks")

    def _auth_test(self, params: dict) -> dict:
        return {"ok": True, "url": "https://cadence-test.slack.com/", "team": "Cadence Test", "user": "cadence",
                "team_id": self.team_id, "user_id": self.bot_user_id, "bot_id": "BCADENCE",
                "is_enterprise_install": False}

    def _chat_postMessage(self, params: dict) -> dict:
        self._require(params, "channel")
        if not (params.get("text") or params.get("blocks")):
            raise SlackApiFailure("no_text")
        self._check_blocks(params.get("blocks"), 50)
        channel = params["channel"]
        if channel.startswith("D"):
            if channel[1:] not in self.users:
                raise SlackApiFailure("channel_not_found")
        elif channel.startswith("U"):
            self._user(channel)
        ts = f"{time.time():.6f}"
        return {"ok": True, "channel": channel, "ts": ts,
                "message": {"type": "message", "text": params.get("text"), "ts": ts, "bot_id": "BCADENCE"}}

    def _chat_postEphemeral(self, params: dict) -> dict:
        self._require(params, "channel", "user")
        self._user(params["user"])
        self._check_blocks(params.get("blocks"), 50)
        return {"ok": True, "message_ts": f"{time.time():.6f}"}

    def _chat_update(self, params: dict) -> dict:
        self._require(params, "channel", "ts")
        return {"ok": True, "channel": params["channel"], "ts": params["ts"]}

    def _views_publish(self, params: dict) -> dict:
        self._require(params, "user_id", "view")
        self._user(params["user_id"])
        view = params["view"]
        if not isinstance(view, dict) or view.get("type") != "home":
            raise SlackApiFailure("invalid_arguments")
        self._check_blocks(view.get("blocks"), 100)
        return {"ok": True, "view": {"id": f"V{next(self._ids)}", **view}}

    def _views_open(self, params: dict) -> dict:
        self._require(params, "trigger_id", "view")
        if not str(params["trigger_id"]).endswith(".fake"):
            raise SlackApiFailure("invalid_trigger_id")
        view = params["view"]
        if not isinstance(view, dict) or view.get("type") != "modal" or len(view["title"]["text"]) > 24:
            raise SlackApiFailure("invalid_arguments")
        self._check_blocks(view.get("blocks"), 100)
        return {"ok": True, "view": {"id": f"V{next(self._ids)}", **view}}

    def _views_update(self, params: dict) -> dict:
        return {"ok": True, "view": params.get("view")}

    def _users_info(self, params: dict) -> dict:
        self._require(params, "user")
        user = json.loads(json.dumps(self._user(params["user"])))
        if "users:read.email" not in self.scopes:
            user["profile"].pop("email", None)
        return {"ok": True, "user": user}

    def _users_lookupByEmail(self, params: dict) -> dict:
        self._require(params, "email")
        for user in self.users.values():
            if user["profile"].get("email", "").lower() == str(params["email"]).lower():
                return {"ok": True, "user": user}
        raise SlackApiFailure("users_not_found")

    def _conversations_open(self, params: dict) -> dict:
        users = str(params.get("users") or "").split(",")
        if len(users) != 1 or not users[0]:
            raise SlackApiFailure("invalid_arguments")
        self._user(users[0])
        return {"ok": True, "channel": {"id": "D" + users[0], "is_im": True, "user": users[0]}}

    def _files_getUploadURLExternal(self, params: dict) -> dict:
        self._require(params, "filename", "length")
        file_id = f"F{next(self._ids):08d}"
        with self._lock:
            self._pending_files[file_id] = {"filename": params["filename"], "length": int(params["length"])}
        return {"ok": True, "upload_url": f"{self.root}/upload/v1/{file_id}", "file_id": file_id}

    def _files_completeUploadExternal(self, params: dict) -> dict:
        files = params.get("files")
        files = json.loads(files) if isinstance(files, str) else files
        if not files:
            raise SlackApiFailure("invalid_arguments")
        done = []
        for item in files:
            file_id = item["id"]
            if file_id not in self.uploads:
                raise SlackApiFailure("file_not_found")
            shared = {"id": file_id, "title": item.get("title"), "channel_id": params.get("channel_id"),
                      "initial_comment": params.get("initial_comment")}
            self.shared_files.append(shared)
            done.append({"id": file_id, "title": item.get("title"), "name": self._pending_files[file_id]["filename"]})
        return {"ok": True, "files": done}

    def handle_upload(self, file_id: str, data: bytes) -> tuple[int, str]:
        with self._lock:
            pending = self._pending_files.get(file_id)
            if pending is None or len(data) != pending["length"]:
                return 400, "bad upload"
            self.uploads[file_id] = data
        return 200, f"OK - {len(data)}"

    # -- Socket Mode ---------------------------------------------------------------------------
    def push(self, envelope_type: str, payload: dict, *, timeout: float = 5.0) -> str:
        """Send an envelope to the connected Socket Mode client; returns its envelope id."""
        deadline = time.monotonic() + timeout
        while not self._sockets and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self._sockets:
            raise AssertionError("no Socket Mode client connected")
        envelope_id = f"env-{next(self._ids)}"
        self._sockets[-1].send_text(json.dumps({"envelope_id": envelope_id, "type": envelope_type, "payload": payload,
                                                "accepts_response_payload": envelope_type != "events_api",
                                                "retry_attempt": 0, "retry_reason": ""}))
        return envelope_id

    def close_sockets(self) -> None:
        """Close every Socket Mode connection from the server side (a close frame, then FIN)."""
        for ws in list(self._sockets):
            try:
                ws.send_frame(0x8, struct.pack("!H", 1001))
            except OSError:
                pass
            ws.close()

    def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> dict | None:
        with self._acks_changed:
            self._acks_changed.wait_for(lambda: envelope_id in self._acks, timeout)
            return self._acks.get(envelope_id)

    def _socket_message(self, text: str) -> None:
        try:
            data = json.loads(text)
        except ValueError:
            return
        if isinstance(data, dict) and data.get("envelope_id"):
            with self._acks_changed:
                self._acks[data["envelope_id"]] = data
                self._acks_changed.notify_all()


class _WebSocket:
    """The server side of one WebSocket connection (unmasked frames out, masked frames in)."""

    def __init__(self, sock: socket.socket, fake: FakeSlack):
        self.sock, self.fake = sock, fake
        self._send_lock = threading.Lock()
        self.open = True

    def send_frame(self, opcode: int, payload: bytes) -> None:
        length = len(payload)
        if length < 126:
            head = struct.pack("!BB", 0x80 | opcode, length)
        elif length < 65536:
            head = struct.pack("!BBH", 0x80 | opcode, 126, length)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 127, length)
        with self._send_lock:
            self.sock.sendall(head + payload)

    def send_text(self, text: str) -> None:
        self.send_frame(0x1, text.encode("utf-8"))

    def _read_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def serve(self) -> None:
        self.send_text(json.dumps({"type": "hello", "num_connections": 1,
                                   "debug_info": {"host": "fake-slack"}, "connection_info": {"app_id": "ACADENCE"}}))
        try:
            while self.open:
                first, second = self._read_exact(2)
                opcode, masked, length = first & 0x0F, second & 0x80, second & 0x7F
                if length == 126:
                    length = struct.unpack("!H", self._read_exact(2))[0]
                elif length == 127:
                    length = struct.unpack("!Q", self._read_exact(8))[0]
                mask = self._read_exact(4) if masked else b"\0\0\0\0"
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(self._read_exact(length)))
                if opcode == 0x8:
                    self.send_frame(0x8, payload[:2])
                    break
                if opcode == 0x9:
                    self.send_frame(0xA, payload)
                elif opcode == 0x1:
                    self.fake._socket_message(payload.decode("utf-8"))
        except (ConnectionError, OSError, ValueError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        if self.open:
            self.open = False
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self in self.fake._sockets:
            self.fake._sockets.remove(self)


class _Handler(BaseHTTPRequestHandler):
    fake: FakeSlack
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:  # keep test output clean
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: dict, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), headers=headers)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/link") and self.headers.get("Upgrade", "").lower() == "websocket":
            key = self.headers.get("Sec-WebSocket-Key", "")
            accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", accept)
            self.end_headers()
            self.wfile.flush()
            ws = _WebSocket(self.connection, self.fake)
            self.fake._sockets.append(ws)
            ws.serve()
            self.close_connection = True
            return
        self._send(404, b"not found", "text/plain")

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        raw = self._body()
        if parts.path.startswith("/hooks/"):
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._send(400, b"invalid_payload", "text/plain")
                return
            with self.fake._lock:
                self.fake.hooks.append((parts.path.rsplit("/", 1)[1], body))
            self._send(200, b"ok", "text/plain")
            return
        if parts.path.startswith("/upload/v1/"):
            status, text = self.fake.handle_upload(parts.path.rsplit("/", 1)[1], raw)
            self._send(status, text.encode(), "text/plain")
            return
        if not parts.path.startswith("/api/"):
            self._send(404, b"not found", "text/plain")
            return
        method = parts.path[len("/api/"):]
        params: dict[str, Any] = dict(parse_qsl(parts.query))
        content_type = self.headers.get("Content-Type", "")
        if raw and content_type.startswith("application/json"):
            params.update(json.loads(raw))
        elif raw:
            params.update(parse_qsl(raw.decode("utf-8")))
        for name in ("blocks", "view", "files", "attachments"):
            if isinstance(params.get(name), str):
                try:
                    params[name] = json.loads(params[name])
                except ValueError:
                    pass
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else params.pop("token", None)
        try:
            self._json(200, self.fake.handle_api(method, params, token))
        except SlackApiFailure as failure:
            self._json(failure.status, {"ok": False, "error": failure.error, **failure.extra}, failure.headers)


def main() -> None:  # pragma: no cover - manual use
    import argparse

    parser = argparse.ArgumentParser(description="Run the fake Slack until killed.")
    parser.add_argument("--user", action="append", default=[], help="USERID=email")
    args = parser.parse_args()
    fake = FakeSlack().start()
    for item in args.user:
        user_id, _, email = item.partition("=")
        fake.add_user(user_id, email)
    print(json.dumps({"api_url": fake.api_url, "bot_token": fake.bot_token, "app_token": fake.app_token}), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":  # pragma: no cover
    main()
