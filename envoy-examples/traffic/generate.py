#!/usr/bin/env python3
"""Generates the bundled recordings for the example policies.

Each recording mixes ordinary customers with attacks, so that replaying it through
stakeguard.wasm with the matching policy exercises every control:

- bank.jsonl (stakeguard's JSON Lines format) for policies/examples/bank.json,
- retailer.har (HAR 1.2, as a browser or proxy tool exports it) for retailer.json,
- minimal.tap.jsonl (Envoy tap traces, buffered, one per line) for minimal.json.

Each request carries the response the upstream gave (the traffic was recorded in front of
an unprotected upstream), so a replay shows what the filter changes. Deterministic: the
same seed writes the same files. Run: python3 envoy-examples/traffic/generate.py
"""

import base64
import datetime
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
START = datetime.datetime(2026, 11, 29, 9, 0, 0, tzinfo=datetime.timezone.utc)
UPSTREAM_HEADERS = [["server", "nginx/1.25.3"], ["x-powered-by", "Express"], ["content-type", "application/json"]]


class Recording:
    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.entries = []
        self.connections = 0

    def connection(self):
        self.connections += 1
        return f"c{self.connections}"

    def add(self, at_ms, conn, method, authority, path, headers=(), body=None, source=None,
            peer_uri_san=None, status=200, response_headers=None, response_body='{"ok":true}'):
        self.entries.append({
            "at_ms": at_ms,
            "connection": conn,
            "method": method,
            "authority": authority,
            "path": path,
            "headers": [list(h) for h in headers],
            "body": body,
            "source": source,
            "peer_uri_san": peer_uri_san,
            "status": status,
            "response_headers": [list(h) for h in (response_headers if response_headers is not None else UPSTREAM_HEADERS)],
            "response_body": response_body,
        })

    def sorted(self):
        return sorted(self.entries, key=lambda e: (e["at_ms"], e["connection"]))


def iso(ms):
    moment = START + datetime.timedelta(milliseconds=ms)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def json_body(value):
    return json.dumps(value, separators=(",", ":"))


# ---------------------------------------------------------------------------------------
# The bank: policies/examples/bank.json
# ---------------------------------------------------------------------------------------

BANK = "bank.example.com"
PASSWORDS = {"alice": "correct horse", "bob": "hunter2!", "carol": "s3cret-carol", "dave": "dave-pass",
             "erin": "erin-pass", "frank": "frank-pass"}


def bank_login(rec, t, conn, ip, user, password):
    ok = PASSWORDS.get(user) == password
    body = json_body({"username": user, "password": password})
    sid = f"sid-{user}-{rec.rng.randrange(16**8):08x}" if ok else None
    headers = UPSTREAM_HEADERS + ([["set-cookie", f"sid={sid}; Path=/"]] if ok else [])
    rec.add(t, conn, "POST", BANK, "/api/v2/login",
            [("content-type", "application/json"), ("content-length", str(len(body))), ("user-agent", "BankApp/5.2")],
            body=body, source=f"{ip}:{rec.rng.randrange(20000, 60000)}", status=200 if ok else 401,
            response_headers=headers,
            response_body=json_body({"token": f"tok-{user}"}) if ok else '{"error":"invalid credentials"}')
    return sid


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(user, scope="accounts:read transfers:write", roles=None):
    """A bearer token as Envoy's jwt_authn passes it on (the signature is its business)."""
    claims = {"sub": user, "accounts": ACCOUNTS.get(user, []), "scope": scope}
    if roles:
        claims["roles"] = roles
    header = b64url(b'{"alg":"RS256","kid":"bank-2026"}')
    return f"{header}.{b64url(json.dumps(claims, separators=(',', ':')).encode())}.c2lnbmF0dXJl"


ACCOUNTS = {user: [str(1000 + 10 * i + k) for k in range(3)]
            for i, user in enumerate(["alice", "bob", "carol", "dave", "erin", "frank", "mallory", "aggregator"])}


def customer_headers(user, sid, extra=(), scope="accounts:read transfers:write", roles=None):
    headers = [("authorization", f"Bearer {token(user, scope, roles)}"), ("x-user-id", user), ("user-agent", "BankApp/5.2"),
               ("accept", "application/json")]
    if sid:
        headers.append(("cookie", f"sid={sid}; theme=dark"))
    return headers + list(extra)


def bank_customer_session(rec, t, user, ip, requests):
    """A customer who signs in and uses the app for a while."""
    conn = rec.connection()
    sid = bank_login(rec, t, conn, ip, user, PASSWORDS[user])
    src = f"{ip}:{rec.rng.randrange(20000, 60000)}"
    for _ in range(requests):
        t += rec.rng.randrange(4_000, 40_000)
        choice = rec.rng.random()
        if choice < 0.35:
            rec.add(t, conn, "GET", BANK, "/api/v2/accounts", customer_headers(user, sid), source=src,
                    response_headers=UPSTREAM_HEADERS + [["set-cookie", f"last_view=accounts; Path=/"]])
        elif choice < 0.6:
            acct = rec.rng.choice(ACCOUNTS[user])
            rec.add(t, conn, "GET", BANK, f"/api/v2/accounts/{acct}?expand=balance", customer_headers(user, sid), source=src,
                    response_body=json_body({"id": acct, "balance": rec.rng.randrange(100, 99999)}))
        elif choice < 0.65:
            rec.add(t, conn, "GET", BANK, f"/api/v2/users/{user}/profile", customer_headers(user, sid), source=src,
                    response_body=json_body({"user": user}))
        elif choice < 0.8:
            body = json_body({"from": rec.rng.randrange(1000, 9999), "to": rec.rng.randrange(1000, 9999), "amount": rec.rng.randrange(5, 500)})
            rec.add(t, conn, "POST", BANK, "/api/v2/transfers",
                    customer_headers(user, sid, [("content-type", "application/json"), ("content-length", str(len(body)))]),
                    body=body, source=src, status=201)
        else:
            pair = rec.rng.choice(["eur-usd", "usd-chf", "gbp-eur"])
            rec.add(t, conn, "GET", BANK, f"/api/v1/rates/{pair}", [("accept", "application/json"), ("user-agent", "BankApp/5.2")],
                    source=src, response_headers=[["server", "rates-svc"], ["content-type", "application/json"]])
    return t, sid, src, conn


def bank():
    rec = Recording(seed=20261129)
    # Ordinary customers, spread over the first 40 minutes.
    sessions = {}
    for i, user in enumerate(["alice", "bob", "carol", "dave", "erin", "frank"]):
        ip = f"203.0.113.{10 + i}"
        end, sid, src, conn = bank_customer_session(rec, i * 90_000, user, ip, 26)
        sessions[user] = (end, sid, src, conn)

    # Credential stuffing from one address: many usernames, wrong passwords. The client
    # IP locks out after five failures.
    conn = rec.connection()
    for k in range(14):
        user = f"user{rec.rng.randrange(100, 999)}"
        bank_login(rec, 300_000 + k * 1_500, conn, "198.51.100.66", user, "Winter2026!")

    # A distributed attack on one username from many addresses: the username locks out.
    for k in range(9):
        bank_login(rec, 600_000 + k * 20_000, rec.connection(), f"192.0.2.{100 + k}", "carol", f"guess-{k}")
    # ...and carol herself, with the right password, meets the lockout too (block).
    bank_login(rec, 600_000 + 10 * 20_000, rec.connection(), "203.0.113.12", "carol", PASSWORDS["carol"])

    # A script hammering transfers with alice's token: 10 per minute allowed.
    conn = rec.connection()
    for k in range(16):
        body = json_body({"from": 1111, "to": 2222 + k, "amount": 1})
        rec.add(900_000 + k * 1_000, conn, "POST", BANK, "/api/v2/transfers",
                customer_headers("mallory", None, [("content-type", "application/json"), ("content-length", str(len(body)))]),
                body=body, source="198.51.100.77:41000", status=201)

    # Shadow API scanning.
    conn = rec.connection()
    for k, path in enumerate(["/admin", "/.env", "/api/v2/internal/debug", "/actuator/health", "/api/v3/accounts", "/graphql"]):
        rec.add(1_000_000 + k * 700, conn, "GET", BANK, path, [("user-agent", "sqlmap/1.8")], source="198.51.100.99:50000",
                status=404, response_body='{"error":"not found"}')

    # Ambiguous paths: traversal and encoded slashes.
    for k, path in enumerate(["/api/v2/accounts/..%2f..%2fadmin", "/api/v2/accounts%2F42", "/api/v2/%2e%2e/%2e%2e/etc/passwd",
                              "/api/v2/accounts/1%00.json", "/api\\v2\\accounts"]):
        rec.add(1_010_000 + k * 500, rec.connection(), "GET", BANK, path, customer_headers("alice", None),
                source="198.51.100.99:50001")

    # Zombie APIs: the deprecated v1 (annotated) and the retired v0 (410).
    for k in range(6):
        user = ["alice", "bob"][k % 2]
        rec.add(1_100_000 + k * 5_000, rec.connection(), "GET", BANK, f"/api/v1/accounts/{ACCOUNTS[user][k % 3]}", customer_headers(user, None),
                source=f"203.0.113.{10 + k % 2}:33000")
    for k in range(3):
        rec.add(1_140_000 + k * 5_000, rec.connection(), "GET", BANK, f"/api/v0/statements/2026/{k + 1:02d}",
                customer_headers("legacy-batch", None), source="10.20.0.5:45000")

    # Wrong methods and missing credentials.
    rec.add(1_200_000, rec.connection(), "DELETE", BANK, f"/api/v2/accounts/{ACCOUNTS['bob'][0]}", customer_headers("bob", None), source="203.0.113.11:1")
    rec.add(1_201_000, rec.connection(), "PUT", BANK, "/api/v2/transfers", customer_headers("bob", None), source="203.0.113.11:2")
    for k in range(3):
        rec.add(1_210_000 + k * 1_000, rec.connection(), "GET", BANK, "/api/v2/accounts", [("user-agent", "curl/8.5.0")],
                source="198.51.100.5:1", status=401, response_body='{"error":"unauthorized"}')

    # Bodies: XML to a JSON API (415), an oversized transfer (413).
    xml = "<transfer><to>1</to></transfer>"
    rec.add(1_300_000, rec.connection(), "POST", BANK, "/api/v2/transfers",
            customer_headers("dave", None, [("content-type", "application/xml"), ("content-length", str(len(xml)))]), body=xml,
            source="203.0.113.13:1", status=201)
    big = json_body({"from": 1, "to": 2, "amount": 1, "memo": "x" * 20_000})
    rec.add(1_301_000, rec.connection(), "POST", BANK, "/api/v2/transfers",
            customer_headers("dave", None, [("content-type", "application/json"), ("content-length", str(len(big)))]), body=big,
            source="203.0.113.13:2", status=201)

    # Sessions: alice comes back after a long break with her old cookie (idle timeout);
    # bob's cookie shows up from an address it was never used from (hijack suspected).
    end, sid, src, conn = sessions["alice"]
    rec.add(end + 15 * 60_000, conn, "GET", BANK, "/api/v2/accounts", customer_headers("alice", sid), source=src)
    end, sid, src, conn = sessions["bob"]
    rec.add(end + 30_000, rec.connection(), "GET", BANK, "/api/v2/accounts", customer_headers("bob", sid),
            source="198.51.100.123:4444")

    # Broken object level authorization: mallory walks other customers' account numbers
    # and profiles (403, paging the owner), then support reads one legitimately.
    conn = rec.connection()
    for k, acct in enumerate(["1000", "1011", "1022", "1040"]):
        rec.add(1_400_000 + k * 900, conn, "GET", BANK, f"/api/v2/accounts/{acct}", customer_headers("mallory", None),
                source="198.51.100.77:41001", response_body=json_body({"id": acct, "balance": 123}))
    rec.add(1_404_000, conn, "GET", BANK, "/api/v2/users/alice/profile", customer_headers("mallory", None),
            source="198.51.100.77:41001")
    rec.add(1_410_000, rec.connection(), "GET", BANK, "/api/v2/accounts/1000", customer_headers("sam", None, roles=["support"]),
            source="10.40.0.3:5000")
    # Function-level authorization: a read-only token tries a transfer (403).
    body = json_body({"from": 1000, "to": 1011, "amount": 900})
    rec.add(1_420_000, rec.connection(), "POST", BANK, "/api/v2/transfers",
            customer_headers("frank", None, [("content-type", "application/json"), ("content-length", str(len(body)))], scope="accounts:read"),
            body=body, source="203.0.113.15:7000", status=201)
    # CORS: the web app's preflight and request, and a foreign site's.
    for k, origin in enumerate(["https://app.bank.example", "https://evil.example"]):
        rec.add(1_430_000 + k * 1_000, rec.connection(), "OPTIONS", BANK, "/api/v2/accounts/1000",
                [("origin", origin), ("access-control-request-method", "GET"), ("access-control-request-headers", "authorization")],
                source="203.0.113.10:7100", status=204, response_headers=[["allow", "GET"]], response_body="")
        rec.add(1_430_500 + k * 1_000, rec.connection(), "GET", BANK, "/api/v2/accounts/1000",
                customer_headers("alice", None, [("origin", origin)]), source="203.0.113.10:7101",
                response_headers=UPSTREAM_HEADERS + [["access-control-allow-origin", origin], ["access-control-allow-credentials", "true"]])

    # The mTLS aggregator partner polls accounts quickly: exempt from the rate limit.
    conn = rec.connection()
    for k in range(70):
        rec.add(1_500_000 + k * 500, conn, "GET", BANK, f"/api/v2/accounts/{ACCOUNTS['aggregator'][k % 3]}", customer_headers("aggregator", None),
                source="10.30.0.9:52000", peer_uri_san="spiffe://partners.example/aggregator")
    return rec.sorted()


def write_jsonl(entries, path):
    with open(path, "w") as out:
        for e in entries:
            line = {
                "time": iso(e["at_ms"]),
                "connection": e["connection"],
                "source": e["source"],
                "request": {"method": e["method"], "authority": e["authority"], "path": e["path"], "scheme": "https",
                            "headers": e["headers"]},
                "response": {"status": e["status"], "headers": e["response_headers"], "body": e["response_body"]},
            }
            if e["body"] is not None:
                line["request"]["body"] = e["body"]
            if e["peer_uri_san"]:
                line["peer_uri_san"] = e["peer_uri_san"]
            out.write(json.dumps(line, separators=(",", ":")) + "\n")


# ---------------------------------------------------------------------------------------
# The retailer: policies/examples/retailer.json (behind one load balancer: the client is
# the last X-Forwarded-For entry)
# ---------------------------------------------------------------------------------------

SHOP = "shop.example.com"


def retailer():
    rec = Recording(seed=7)
    lb = "10.0.0.2"

    def add(t, method, authority, path, client, headers=(), body=None, status=200, response_headers=None, response_body='{"ok":true}'):
        hs = [("x-forwarded-for", client), ("user-agent", "Mozilla/5.0")] + list(headers)
        if body is not None:
            hs.append(("content-length", str(len(body.encode()))))
        rec.add(t, rec.connection(), method, authority, path, hs, body=body, source=f"{lb}:{rec.rng.randrange(30000, 60000)}",
                status=status, response_headers=response_headers, response_body=response_body)

    # Shoppers browse the catalogue on regional hosts, fill carts and order.
    for i in range(12):
        client = f"203.0.113.{40 + i}"
        t = i * 45_000
        uid = f"u{i:03d}"
        cart = f"cart-{i:03d}"
        for k in range(8):
            t += rec.rng.randrange(2_000, 20_000)
            host = ["eu.shop.example.com", "us.shop.example.com", SHOP][k % 3]
            add(t, "GET", host, f"/api/v1/products/{rec.rng.randrange(1, 5000)}", client, [("accept", "application/json")],
                response_headers=[["x-powered-by", "PHP/8.3"], ["content-type", "application/json"]])
        t += 5_000
        body = json_body({"sku": rec.rng.randrange(1, 5000), "qty": 1})
        add(t, "POST", SHOP, "/api/v3/cart/items", client,
            [("content-type", "application/json"), ("cookie", f"uid={uid}; cart_session={cart}")], body=body,
            response_headers=[["set-cookie", f"cart_session={cart}; Path=/"], ["content-type", "application/json"]])
        t += 8_000
        add(t, "POST", SHOP, "/api/v3/orders", client, [("content-type", "application/json"), ("cookie", f"uid={uid}; cart_session={cart}")],
            body=json_body({"cart": cart}), status=201)

    # Sign-in: a customer mistypes, then gets in; an attacker sprays one account (alert,
    # never blocks a customer).
    form = lambda email, pw: f"email={email.replace('@', '%40')}&password={pw}"
    add(100_000, "POST", SHOP, "/signin", "203.0.113.60", [("content-type", "application/x-www-form-urlencoded")],
        body=form("ann@example.com", "typo"), status=401, response_body='{"error":"bad password"}')
    add(104_000, "POST", SHOP, "/signin", "203.0.113.60", [("content-type", "application/x-www-form-urlencoded")],
        body=form("ann@example.com", "right"), response_headers=[["set-cookie", "uid=u900; Path=/"], ["content-type", "application/json"]])
    for k in range(13):
        add(200_000 + k * 3_000, "POST", SHOP, "/signin", f"198.51.100.{k + 1}", [("content-type", "application/x-www-form-urlencoded")],
            body=form("ceo@example.com", f"pw{k}"), status=401, response_body='{"error":"bad password"}')

    # Password-reset enumeration from one client: delayed after 3 misses.
    for k in range(8):
        add(400_000 + k * 2_000, "POST", SHOP, "/api/v1/password-reset", "198.51.100.200", [("content-type", "application/json")],
            body=json_body({"email": f"guess{k}@example.com"}), status=404, response_body='{"error":"no such account"}')

    # The price crawler (partner key) and the warehouse (partner CIDR) poll hard.
    for k in range(40):
        add(500_000 + k * 200, "GET", SHOP, f"/api/v1/products/{k}", "192.0.2.50", [("x-partner-key", "pc-7f3a")])
    for k in range(10):
        add(520_000 + k * 300, "POST", SHOP, "/api/v3/cart/items", "198.51.100.7", [("content-type", "application/json"), ("cookie", "uid=wh1")],
            body=json_body({"restock": k}))

    # Browsers: the shop's own preflight for the cart, and a foreign site reading the
    # catalogue (the catalogue tier only reports it).
    add(590_000, "OPTIONS", SHOP, "/api/v3/cart/items", "203.0.113.41",
        [("origin", "https://shop.example.com"), ("access-control-request-method", "POST"), ("access-control-request-headers", "content-type")],
        status=204, response_body="")
    add(590_500, "GET", "eu.shop.example.com", "/api/v1/products/77", "203.0.113.99", [("origin", "https://price-scraper.example")])

    # Scanners and an oversized product query (monitor mode reports, lets through).
    for k, path in enumerate(["/wp-login.php", "/api/v2/products", "/.git/config"]):
        add(600_000 + k * 400, "GET", SHOP, path, "198.51.100.250", status=404)
    add(610_000, "GET", SHOP, "/api/v1/products/search", "203.0.113.70", [("content-type", "application/json")],
        body=json_body({"q": "x" * 5_000}))
    return rec.sorted()


def write_har(entries, path):
    har_entries = []
    for e in entries:
        url = f"https://{e['authority']}{e['path']}"
        request = {
            "method": e["method"], "url": url, "httpVersion": "HTTP/2.0",
            "headers": [{"name": k, "value": v} for k, v in e["headers"]],
            "queryString": [], "cookies": [], "headersSize": -1, "bodySize": len((e["body"] or "").encode()),
        }
        if e["body"] is not None:
            mime = dict(e["headers"]).get("content-type", "application/octet-stream")
            request["postData"] = {"mimeType": mime, "text": e["body"]}
        body = e["response_body"] or ""
        har_entries.append({
            "startedDateTime": iso(e["at_ms"]),
            "time": 12,
            "connection": e["connection"],
            "request": request,
            "response": {
                "status": e["status"], "statusText": "", "httpVersion": "HTTP/2.0",
                "headers": [{"name": k, "value": v} for k, v in e["response_headers"]],
                "cookies": [], "redirectURL": "", "headersSize": -1, "bodySize": len(body),
                "content": {"size": len(body), "mimeType": "application/json",
                            "text": base64.b64encode(body.encode()).decode(), "encoding": "base64"},
            },
            "cache": {}, "timings": {"send": 0, "wait": 10, "receive": 2},
        })
    har = {"log": {"version": "1.2", "creator": {"name": "stakeguard traffic generator", "version": "1"}, "entries": har_entries}}
    with open(path, "w") as out:
        json.dump(har, out, indent=1)
        out.write("\n")


# ---------------------------------------------------------------------------------------
# Minimal: policies/examples/minimal.json, as Envoy tap traces
# ---------------------------------------------------------------------------------------

def minimal():
    rec = Recording(seed=1)
    for k in range(130):
        client = f"192.0.2.{1 + k % 3}" if k < 100 else "198.51.100.1"
        path = f"/api/items/{k}" if k % 10 else "/health"
        rec.add(k * 100, rec.connection(), "GET", "api.example.com", path, [("user-agent", "probe/1")],
                source=f"{client}:{40000 + k}", response_headers=[["content-type", "application/json"]])
    return rec.sorted()


def write_tap(entries, path):
    with open(path, "w") as out:
        for e in entries:
            pseudo = [(":authority", e["authority"]), (":path", e["path"]), (":method", e["method"]), (":scheme", "http"),
                      ("x-forwarded-for", e["source"].rsplit(":", 1)[0])]
            trace = {"http_buffered_trace": {
                "request": {"headers": [{"key": k, "value": v} for k, v in pseudo + [tuple(h) for h in e["headers"]]]},
                "response": {"headers": [{"key": ":status", "value": str(e["status"])}] +
                             [{"key": k, "value": v} for k, v in e["response_headers"]],
                             "body": {"as_string": e["response_body"], "truncated": False}},
            }}
            out.write(json.dumps(trace, separators=(",", ":")) + "\n")


def main():
    bank_entries = bank()
    write_jsonl(bank_entries, HERE / "bank.jsonl")
    retail_entries = retailer()
    write_har(retail_entries, HERE / "retailer.har")
    minimal_entries = minimal()
    write_tap(minimal_entries, HERE / "minimal.tap.jsonl")
    print(f"bank.jsonl: {len(bank_entries)} requests; retailer.har: {len(retail_entries)}; minimal.tap.jsonl: {len(minimal_entries)}")


if __name__ == "__main__":
    main()
