"""A stateful fake of a Salesforce org's REST API and its OAuth server, over HTTPS on 127.0.0.1.

Speaks what Cadence's real client (simple-salesforce + requests) sends:
- OAuth 2.0 web server flow with PKCE (`/services/oauth2/authorize` → 302 to the redirect URI
  with `code` and `state`; `/services/oauth2/token` with `authorization_code` + `code_verifier`,
  and the `refresh_token` grant). Token answers carry `instance_url` (this server) and `id`
  (`…/id/<org>/<user>`); errors are `{"error": "invalid_grant", …}` with HTTP 400.
- REST `/services/data/vNN.N/`: `query?q=SOQL` (a subset: SELECT fields incl. `Account.Name`
  FROM object WHERE a AND b …, with `=`, `!=`, `IN (…)`, `LIKE`, ORDER BY one field, LIMIT),
  `query/<locator>` (queryMore pages of `page_size` records, `nextRecordsUrl`),
  `composite/sobjects` POST (create) and PATCH (update), ≤ 200 records, `allOrNone`, per-record
  `{id, success, errors}`; `sobjects/<type>/<id>` GET.
- 401 `INVALID_SESSION_ID` for an unknown or expired access token; `Sforce-Limit-Info:
  api-usage=used/limit` on every answer; 403 `REQUEST_LIMIT_EXCEEDED` past the limit.

Faults a test can inject: `fail_next(n, status)` (a 5xx before anything is written),
`lose_next_answer()` (the write is committed, then the connection is dropped), `expire_sessions()`,
`revoke_refresh_tokens()`, `api_limit` / `api_used`. `records(type)` shows the org's state.
"""
from __future__ import annotations

import base64
import hashlib
import itertools
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import date
from urllib.parse import urlencode

import requests

from .graph_server import FakeHTTPServer, Reply, Request
from .tls import TestTLS

PREFIXES = {"Account": "001", "Contact": "003", "Lead": "00Q", "User": "005", "Task": "00T"}
TASK_STATUSES = {"Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"}
TASK_FIELDS = {"WhoId", "OwnerId", "Subject", "ActivityDate", "Status", "Priority", "TaskSubtype", "Description",
               "WhatId"}
READ_ONLY_ON_UPDATE = {"TaskSubtype"}


def _error(status: int, code: str, message: str) -> Reply:
    return Reply.json(status, [{"message": message, "errorCode": code}])


@dataclass
class _Grant:
    user_id: str
    client_id: str
    redirect_uri: str | None = None
    challenge: str | None = None
    used: bool = False


@dataclass
class _Pager:
    records: list[dict]
    offset: int


@dataclass
class Fault:
    kind: str  # "status" | "lose"
    status: int = 503
    applies_to: str = "write"  # "write" (composite/sobjects) | "any"


class FakeSalesforce(FakeHTTPServer):
    """One org (users, contacts, leads, accounts, tasks) and its OAuth server."""

    def __init__(self, tls: TestTLS, *, port: int = 0, page_size: int = 2000, api_limit: int = 100000):
        super().__init__(port=port, ssl_context=tls.server_context())
        self.tls = tls
        self.lock = threading.RLock()
        self.org_id = "00D" + secrets.token_hex(6)[:12].upper()
        self.page_size = page_size
        self.api_limit, self.api_used = api_limit, 0
        self.objects: dict[str, dict[str, dict]] = {name: {} for name in PREFIXES}
        self.clients: dict[str, tuple[str | None, set[str]]] = {}
        self.signed_in: str | None = None  # the User Id at the "browser"
        self._ids = itertools.count(1)
        self._codes: dict[str, _Grant] = {}
        self._refresh: dict[str, _Grant] = {}
        self._access: dict[str, str] = {}  # access token → user id
        self._pagers: dict[str, _Pager] = {}
        self._faults: list[Fault] = []
        self.calls: list[tuple[str, str]] = []  # (method, path) of every REST call answered
        self.writes: list[tuple[str, int]] = []  # (method, records) of every collection call

    # ---- set-up ------------------------------------------------------------------------

    def new_id(self, sobject: str) -> str:
        return f"{PREFIXES[sobject]}{next(self._ids):012d}AAA"[:18]

    def add(self, sobject: str, **fields) -> str:
        with self.lock:
            record_id = self.new_id(sobject)
            self.objects[sobject][record_id] = {"Id": record_id, **fields}
            return record_id

    def add_user(self, email: str, name: str | None = None, active: bool = True) -> str:
        return self.add("User", Email=email, Username=email, Name=name or email.split("@")[0], IsActive=active)

    def add_contact(self, email: str, first: str = "", last: str = "Doe", account: str | None = None, **more) -> str:
        account_id = None
        if account:
            account_id = next((i for i, a in self.objects["Account"].items() if a["Name"] == account), None) \
                or self.add("Account", Name=account)
        return self.add("Contact", Email=email, FirstName=first, LastName=last, AccountId=account_id, **more)

    def add_lead(self, email: str, first: str = "", last: str = "Doe", company: str = "Unknown", **more) -> str:
        return self.add("Lead", Email=email, FirstName=first, LastName=last, Company=company, IsConverted=False,
                        **more)

    def register_client(self, client_id: str, client_secret: str | None, redirect_uris: tuple[str, ...] = ()) -> None:
        with self.lock:
            self.clients[client_id] = (client_secret, set(redirect_uris))

    def sign_in(self, user_id: str) -> None:
        self.signed_in = user_id

    def issue_refresh_token(self, user_id: str, client_id: str) -> str:
        """A refresh token as an admin would export it for `--refresh-token-file`."""
        with self.lock:
            token = "5Aep" + secrets.token_urlsafe(32)
            self._refresh[token] = _Grant(user_id, client_id)
            return token

    def records(self, sobject: str) -> list[dict]:
        with self.lock:
            return [dict(r) for r in self.objects[sobject].values()]

    def tasks_for(self, who_id: str) -> list[dict]:
        return [t for t in self.records("Task") if t.get("WhoId") == who_id]

    def complete_sign_in(self, auth_url: str) -> str:
        """Play the browser at the consent page: returns the redirect URL it sends the browser to."""
        answer = requests.get(auth_url, allow_redirects=False, verify=str(self.tls.ca_path), timeout=10)
        assert answer.status_code == 302, answer.text
        return answer.headers["Location"]

    # ---- faults ------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 503, applies_to: str = "write") -> None:
        with self.lock:
            self._faults.extend(Fault("status", status, applies_to) for _ in range(count))

    def lose_next_answer(self) -> None:
        """The next collection call is carried out, then its connection dropped unanswered."""
        with self.lock:
            self._faults.append(Fault("lose"))

    def expire_sessions(self) -> None:
        with self.lock:
            self._access.clear()

    def revoke_refresh_tokens(self) -> None:
        with self.lock:
            self._refresh.clear()
            self._access.clear()

    # ---- HTTP --------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        with self.lock:
            if request.path == "/services/oauth2/authorize" and request.method == "GET":
                return self._authorize(request.query)
            if request.path == "/services/oauth2/token" and request.method == "POST":
                return self._token(request.form())
            match = re.fullmatch(r"/services/data/v(\d+\.\d)/(.+)", request.path)
            if not match:
                return _error(404, "NOT_FOUND", f"The requested resource does not exist: {request.path}")
            return self._rest(request, match.group(2).rstrip("/"))

    # ---- OAuth -------------------------------------------------------------------------

    def _authorize(self, query: dict[str, str]) -> Reply:
        client = self.clients.get(query.get("client_id", ""))
        if client is None:
            return Reply(400, b"error=invalid_client_id")
        redirect = query.get("redirect_uri", "")
        if client[1] and redirect not in client[1]:
            return Reply(400, b"error=redirect_uri_mismatch")
        if query.get("response_type") != "code" or query.get("code_challenge_method") != "S256":
            return Reply(400, b"error=unsupported_response_type")
        if self.signed_in is None:
            return Reply(200, b"<form>log in</form>", {"Content-Type": "text/html"})
        code = "aPrx" + secrets.token_urlsafe(24)
        self._codes[code] = _Grant(self.signed_in, query["client_id"], redirect, query.get("code_challenge"))
        params = {"code": code, **({"state": query["state"]} if "state" in query else {})}
        return Reply(302, headers={"Location": f"{redirect}?{urlencode(params)}"})

    @staticmethod
    def _oauth_error(error: str, description: str, status: int = 400) -> Reply:
        return Reply.json(status, {"error": error, "error_description": description})

    def _token(self, form: dict[str, str]) -> Reply:
        client = self.clients.get(form.get("client_id", ""))
        if client is None:
            return self._oauth_error("invalid_client_id", "client identifier invalid")
        if client[0] is not None and form.get("client_secret") != client[0]:
            return self._oauth_error("invalid_client", "invalid client credentials", 401)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            grant = self._codes.get(form.get("code", ""))
            if grant is None or grant.used or grant.redirect_uri != form.get("redirect_uri"):
                return self._oauth_error("invalid_grant", "invalid authorization code")
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if challenge != grant.challenge:
                return self._oauth_error("invalid_grant", "invalid code verifier")
            grant.used = True
            refresh = "5Aep" + secrets.token_urlsafe(32)
            self._refresh[refresh] = _Grant(grant.user_id, grant.client_id)
            return self._issue(grant.user_id, refresh)
        if grant_type == "refresh_token":
            grant = self._refresh.get(form.get("refresh_token", ""))
            if grant is None:
                return self._oauth_error("invalid_grant", "expired access/refresh token")
            return self._issue(grant.user_id, None)
        return self._oauth_error("unsupported_grant_type", "grant type not supported")

    def _issue(self, user_id: str, refresh: str | None) -> Reply:
        access = f"{self.org_id}!" + secrets.token_urlsafe(40)
        self._access[access] = user_id
        body = {"access_token": access, "instance_url": self.base_url,
                "id": f"{self.base_url}/id/{self.org_id}/{user_id}",
                "token_type": "Bearer", "issued_at": "1700000000000", "signature": "c2lnbmF0dXJl",
                "scope": "api refresh_token"}
        if refresh:
            body["refresh_token"] = refresh
        return Reply.json(200, body)

    # ---- REST --------------------------------------------------------------------------

    def _rest(self, request: Request, path: str) -> Reply:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self._access:
            return _error(401, "INVALID_SESSION_ID", "Session expired or invalid")
        if self.api_used >= self.api_limit:
            return self._with_usage(_error(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."))
        self.api_used += 1
        is_write = path == "composite/sobjects" and request.method in ("POST", "PATCH")
        fault = None
        if self._faults and (is_write or self._faults[0].applies_to == "any"):
            fault = self._faults.pop(0)
            if fault.kind == "status":
                return self._with_usage(_error(fault.status, "SERVER_UNAVAILABLE", "Service temporarily unavailable"))
        self.calls.append((request.method, path))
        reply = self._route(request, path)
        if fault is not None and fault.kind == "lose":
            return Reply(0, drop_connection=True)
        return self._with_usage(reply)

    def _with_usage(self, reply: Reply) -> Reply:
        reply.headers["Sforce-Limit-Info"] = f"api-usage={self.api_used}/{self.api_limit}"
        return reply

    def _route(self, request: Request, path: str) -> Reply:
        if path == "query" and request.method == "GET":
            try:
                records = self._run_soql(request.query.get("q", ""))
            except ValueError as bad:
                return _error(400, "MALFORMED_QUERY", str(bad))
            return Reply.json(200, self._page(records, 0))
        match = re.fullmatch(r"query/([\w-]+)", path)
        if match and request.method == "GET":
            pager = self._pagers.get(match.group(1).rsplit("-", 1)[0])
            if pager is None:
                return _error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
            return Reply.json(200, self._page(pager.records, int(match.group(1).rsplit("-", 1)[1]), match.group(1)))
        if path == "composite/sobjects" and request.method in ("POST", "PATCH"):
            return self._collection(request)
        match = re.fullmatch(r"sobjects/(\w+)/(\w+)", path)
        if match and request.method == "GET":
            found = self.objects.get(match.group(1), {}).get(match.group(2))
            return Reply.json(200, self._shape(match.group(1), found)) if found else \
                _error(404, "NOT_FOUND", "The requested resource does not exist")
        return _error(404, "NOT_FOUND", f"The requested resource does not exist: {path}")

    def _page(self, records: list[dict], offset: int, locator: str | None = None) -> dict:
        chunk = records[offset:offset + self.page_size]
        body = {"totalSize": len(records), "done": offset + len(chunk) >= len(records), "records": chunk}
        if not body["done"]:
            key = locator.rsplit("-", 1)[0] if locator else "01g" + secrets.token_hex(6)
            self._pagers[key] = _Pager(records, offset + len(chunk))
            body["nextRecordsUrl"] = f"/services/data/v60.0/query/{key}-{offset + len(chunk)}"
        return body

    def _shape(self, sobject: str, record: dict, fields: list[str] | None = None) -> dict:
        out = {"attributes": {"type": sobject, "url": f"/services/data/v60.0/sobjects/{sobject}/{record['Id']}"}}
        for name in fields or list(record):
            if "." in name:
                relation, child = name.split(".", 1)
                parent_id = record.get(f"{relation}Id")
                parent = self.objects.get(relation, {}).get(parent_id) if parent_id else None
                out[relation] = None if parent is None else {
                    "attributes": {"type": relation, "url": f"/services/data/v60.0/sobjects/{relation}/{parent_id}"},
                    child: parent.get(child)}
            else:
                out[name] = record.get(name)
        return out

    # ---- writes ------------------------------------------------------------------------

    def _collection(self, request: Request) -> Reply:
        body = request.json() or {}
        records = body.get("records") or []
        if not 0 < len(records) <= 200:
            return _error(400, "EXCEEDED_ID_LIMIT", "record limit exceeded: 1 to 200 records a request")
        self.writes.append((request.method, len(records)))
        results = []
        for record in records:
            sobject = (record.get("attributes") or {}).get("type")
            if sobject != "Task":
                results.append(self._failed("INVALID_TYPE", f"Cadence's fake only writes Task, not {sobject}"))
                continue
            results.append(self._create_task(record) if request.method == "POST" else self._update_task(record))
        return Reply.json(200, results)

    @staticmethod
    def _failed(code: str, message: str, fields: list[str] | None = None) -> dict:
        return {"success": False, "errors": [{"statusCode": code, "message": message, "fields": fields or []}]}

    def _check_task(self, values: dict, updating: bool) -> dict | None:
        unknown = set(values) - TASK_FIELDS - {"Id"}
        if unknown:
            return self._failed("INVALID_FIELD", f"No such column '{sorted(unknown)[0]}' on sobject of type Task")
        if updating and READ_ONLY_ON_UPDATE & set(values):
            return self._failed("INVALID_FIELD_FOR_INSERT_UPDATE", "Unable to create/update fields: TaskSubtype")
        who = values.get("WhoId")
        if who is not None and who not in self.objects["Contact"] and who not in self.objects["Lead"]:
            return self._failed("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["WhoId"])
        owner = values.get("OwnerId")
        if owner is not None and owner not in self.objects["User"]:
            return self._failed("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["OwnerId"])
        if "Status" in values and values["Status"] not in TASK_STATUSES:
            return self._failed("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "bad value for restricted picklist "
                                f"field: {values['Status']}", ["Status"])
        if values.get("ActivityDate"):
            try:
                date.fromisoformat(values["ActivityDate"])
            except ValueError:
                return self._failed("INVALID_TYPE_ON_FIELD_IN_RECORD", "ActivityDate: value not of required type")
        if "Subject" in values and len(values["Subject"] or "") > 255:
            return self._failed("STRING_TOO_LONG", "Subject: data value too large", ["Subject"])
        return None

    def _create_task(self, record: dict) -> dict:
        values = {k: v for k, v in record.items() if k != "attributes"}
        problem = self._check_task(values, updating=False)
        if problem:
            return problem
        if not values.get("Subject") or not values.get("Status"):
            return self._failed("REQUIRED_FIELD_MISSING", "Required fields are missing: [Subject, Status]")
        task_id = self.new_id("Task")
        self.objects["Task"][task_id] = {"Id": task_id, "IsClosed": values["Status"] == "Completed", **values}
        return {"id": task_id, "success": True, "errors": []}

    def _update_task(self, record: dict) -> dict:
        values = {k: v for k, v in record.items() if k != "attributes"}
        task = self.objects["Task"].get(values.get("Id", ""))
        if task is None:
            return self._failed("ENTITY_IS_DELETED", "entity is deleted")
        problem = self._check_task(values, updating=True)
        if problem:
            return problem
        task.update(values)
        task["IsClosed"] = task.get("Status") == "Completed"
        return {"id": task["Id"], "success": True, "errors": []}

    # ---- SOQL --------------------------------------------------------------------------

    _TOKEN = re.compile(r"\s*('(?:[^'\\]|\\.)*'|\(|\)|,|!=|=|[A-Za-z0-9_.:%-]+)")

    def _tokens(self, soql: str) -> list[str]:
        tokens, pos = [], 0
        soql = soql.strip()
        while pos < len(soql):
            match = self._TOKEN.match(soql, pos)
            if not match:
                raise ValueError(f"unexpected token at {pos}: {soql[pos:pos + 10]!r}")
            tokens.append(match.group(1))
            pos = match.end()
            while pos < len(soql) and soql[pos].isspace():
                pos += 1
        return tokens

    @staticmethod
    def _literal(token: str):
        if token.startswith("'"):
            return re.sub(r"\\(.)", r"\1", token[1:-1])
        lowered = token.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        if lowered == "null":
            return None
        return token

    def _run_soql(self, soql: str) -> list[dict]:
        tokens = self._tokens(soql)
        upper = [t.upper() for t in tokens]
        if not upper or upper[0] != "SELECT" or "FROM" not in upper:
            raise ValueError("unexpected token: expecting SELECT … FROM")
        at_from = upper.index("FROM")
        fields = [t for t in tokens[1:at_from] if t != ","]
        sobject = tokens[at_from + 1]
        if sobject not in self.objects:
            raise ValueError(f"sObject type '{sobject}' is not supported.")
        rest, rest_upper = tokens[at_from + 2:], upper[at_from + 2:]
        conditions, order, limit = [], None, None
        i = 0
        if rest_upper[:1] == ["WHERE"]:
            i = 1
            while i < len(rest) and rest_upper[i] not in ("ORDER", "LIMIT"):
                name, op = rest[i], rest_upper[i + 1]
                if op == "IN":
                    if rest[i + 2] != "(":
                        raise ValueError("expecting ( after IN")
                    j, values = i + 3, []
                    while rest[j] != ")":
                        if rest[j] != ",":
                            values.append(self._literal(rest[j]))
                        j += 1
                    conditions.append((name, "IN", values))
                    i = j + 1
                elif op in ("=", "!=", "LIKE"):
                    conditions.append((name, op, self._literal(rest[i + 2])))
                    i += 3
                else:
                    raise ValueError(f"unexpected token: {rest[i + 1]}")
                if i < len(rest) and rest_upper[i] == "AND":
                    i += 1
        if i < len(rest) and rest_upper[i] == "ORDER":
            order = (rest[i + 2], i + 3 < len(rest) and rest_upper[i + 3] == "DESC")
            i += 4 if i + 3 < len(rest) and rest_upper[i + 3] in ("ASC", "DESC") else 3
        if i < len(rest) and rest_upper[i] == "LIMIT":
            limit = int(rest[i + 1])
        rows = [r for r in self.objects[sobject].values() if all(self._holds(r, c) for c in conditions)]
        rows.sort(key=lambda r: (str(r.get(order[0]) or "") if order else r["Id"]), reverse=bool(order and order[1]))
        if limit is not None:
            rows = rows[:limit]
        return [self._shape(sobject, r, fields) for r in rows]

    @staticmethod
    def _holds(record: dict, condition) -> bool:
        name, op, value = condition
        actual = record.get(name)
        if name == "Email" or op == "LIKE":  # Salesforce compares text case-insensitively
            fold = (lambda v: v.lower() if isinstance(v, str) else v)
        else:
            fold = (lambda v: v)
        if op == "IN":
            return fold(actual) in {fold(v) for v in value}
        if op == "=":
            return fold(actual) == fold(value)
        if op == "!=":
            return fold(actual) != fold(value)
        pattern = "^" + re.escape(str(value).lower()).replace("%", ".*").replace("_", ".") + "$"
        return actual is not None and re.match(pattern, str(actual).lower()) is not None
