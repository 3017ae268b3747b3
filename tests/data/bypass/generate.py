#!/usr/bin/env python3
"""Writes the bypass corpus (bank.jsonl, retailer.jsonl): raw requests aimed at the
example policies' protected routes, each with the fate the harness must give it.

One JSON object per line:
  id        unique name, the technique first
  method    request method as sent
  target    request target as sent (origin-form, absolute-form or anything else)
  host      Host header value (absent: no Host header)
  headers   further headers, in order, repeats allowed
  body      request body text (optional)
  expect    the fate in the harness: {"status": N} and, when a route decides,
            {"api": "name version"}; "forwarded": true when the request reaches the
            upstream. 400 is the refusal of an ambiguous path.
  envoy     fates Envoy gives differently, by HCM profile ("default", "recommended"):
            {"status": N, "by": "envoy"} when Envoy itself answers.

Whatever the fate, tests/tests/bypass.rs also checks that a request that reaches the
upstream is not read as a protected route by a lenient backend (decoding repeatedly,
`\\` as `/`, `;parameters` stripped, case-insensitive, override headers honoured) unless
the filter applied that route's own API. Run `python3 generate.py` after editing.
"""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def encode_all(text):
    return "".join("%{:02X}".format(ord(c)) for c in text)


def encode_all_lower(text):
    return "".join("%{:02x}".format(ord(c)) for c in text)


def spellings(path):
    """(technique, target, fate) for one protected path: fate "same" means the request
    must meet the path's own policy; "refused" means 400 (ambiguous)."""
    segs = path.strip("/").split("/")
    first, last = segs[0], segs[-1]
    rest = "/".join(segs[1:])
    head = "/".join(segs[:-1])
    out = [
        ("plain", path, "same"),
        ("pct-letter", "/" + "%{:02X}".format(ord(first[0])) + path[2:], "same"),
        ("pct-letter-lower", "/" + "%{:02x}".format(ord(first[0])) + path[2:], "same"),
        ("pct-segment", "/" + encode_all(first) + "/" + rest, "same"),
        ("pct-segment-lower", "/" + encode_all_lower(first) + "/" + rest, "same"),
        ("pct-everything", "/" + "/".join(encode_all(s) for s in segs), "same"),
        ("pct-double-letter", "/%25" + "{:02X}".format(ord(first[0])) + path[2:], "refused"),
        ("pct-double-lower", "/%25" + "{:02x}".format(ord(first[0])) + path[2:], "refused"),
        ("pct-triple-letter", "/%2525" + "{:02X}".format(ord(first[0])) + path[2:], "refused"),
        ("pct-double-hex-encoded", "/%25%36%31" + path[2:] if first[0] == "a" else "/%25%37%33" + path[2:], "refused"),
        ("case-upper", path.upper(), "same"),
        ("case-title", "/" + "/".join(s[:1].upper() + s[1:] for s in segs), "same"),
        ("case-pct-upper", "/" + encode_all(first.upper()) + "/" + rest, "same"),
        ("slashes-leading", "//" + path.lstrip("/"), "same"),
        ("slashes-inner", path.replace("/", "//"), "same"),
        ("slashes-many", "///" + "///".join(segs), "same"),
        ("dot", "/" + first + "/./" + rest, "same"),
        ("dot-trailing", path + "/.", "same"),
        ("dotdot", "/" + first + "/x/../" + rest, "same"),
        ("dotdot-trailing-parent", path + "/x/..", "same"),
        ("dot-pct", "/" + first + "/%2e/" + rest, "same"),
        ("dotdot-pct", "/" + first + "/x/%2e%2e/" + rest, "same"),
        ("dotdot-pct-mixed", "/" + first + "/x/.%2E/" + rest, "same"),
        ("dotdot-pct-upper", "/" + first + "/x/%2E%2E/" + rest, "same"),
        ("dotdot-double", "/" + first + "/x/%252e%252e/" + rest, "refused"),
        ("dotdot-double-mixed", "/" + first + "/x/.%252E/" + rest, "refused"),
        ("dotdot-slashes", "/" + first + "//x//..//" + rest, "refused"),
        ("dotdot-slashes-inner", "/" + first + "//x/..//" + rest, "same"),
        ("dotdot-above-root", "/../" + path.lstrip("/"), "refused"),
        ("dotdot-above-root-pct", "/%2e%2e/" + path.lstrip("/"), "refused"),
        ("param-segment", "/" + first + ";x=1/" + rest, "refused"),
        ("param-last", path + ";jsessionid=abc", "refused"),
        ("param-dotdot", "/" + first + "/x/..;/" + rest, "refused"),
        ("param-encoded", "/" + first + "%3Bx/" + rest, "refused"),
        ("trailing-slash", path + "/", "same"),
        ("trailing-slashes", path + "//", "same"),
        ("query", path + "?a=1&b=/../x", "same"),
        ("query-empty", path + "?", "same"),
        ("fragment", path + "#frag", "same"),
        ("backslash", path.replace("/", "\\"), "refused"),
        ("backslash-inner", "/" + first + "\\" + rest, "refused"),
        ("backslash-pct", "/" + first + "%5C" + rest, "refused"),
        ("backslash-pct-lower", "/" + first + "%5c" + rest, "refused"),
        ("backslash-double", "/" + first + "%255C" + rest, "refused"),
        ("slash-pct", "/" + first + "%2F" + rest, "refused"),
        ("slash-pct-lower", "/" + first + "%2f" + rest, "refused"),
        ("slash-double", "/" + first + "%252F" + rest, "refused"),
        ("nul-pct", path + "%00", "refused"),
        ("nul-pct-inner", "/" + first + "%00/" + rest, "refused"),
        ("nul-double", path + "%2500", "refused"),
        ("overlong-slash", "/" + first + "%C0%AF" + rest, "refused"),
        ("overlong-dot", "/" + first + "/x/%C0%AE%C0%AE/" + rest, "refused"),
        ("overlong-3byte", "/" + first + "/x/%E0%80%AE%E0%80%AE/" + rest, "refused"),
        ("overlong-backslash", "/" + first + "%C1%9C" + rest, "refused"),
        ("bad-pct", path + "%", "refused"),
        ("bad-pct-hex", path + "%zz", "refused"),
        ("tab-pct", path + "%09", "suffix"),
        ("space-pct", path + "%20", "suffix"),
        ("trailing-dot", path + ".", "suffix"),
        ("trailing-pct-dot", path + "%2e", "suffix"),
    ]
    return out


def under_public(public, target):
    """Dot segments under a public prefix that climb to `target`."""
    depth = len(public.strip("/").split("/"))
    inner = target.lstrip("/")
    ups = lambda dot: "/".join([dot] * depth)
    return [
        ("public-dotdot", public + "/" + ups("..") + "/" + inner, "same"),
        ("public-dotdot-pct", public + "/" + ups("%2e%2e") + "/" + inner, "same"),
        ("public-dotdot-pct-upper", public + "/" + ups("%2E%2E") + "/" + inner, "same"),
        ("public-dotdot-mixed", public + "/" + ups(".%2e") + "/" + inner, "same"),
        ("public-dotdot-double", public + "/" + ups("%252e%252e") + "/" + inner, "refused"),
        ("public-dotdot-double-upper", public + "/" + ups("%252E%252E") + "/" + inner, "refused"),
        ("public-dotdot-double-hex-encoded", public + "/" + ups("%25%32%65%25%32%65") + "/" + inner, "refused"),
        ("public-dotdot-triple", public + "/" + ups("%25252e%25252e") + "/" + inner, "refused"),
        ("public-dotdot-semicolon", public + "/" + ups("..;") + "/" + inner, "refused"),
        ("public-dotdot-backslash", public + "/" + ups("..").replace("/", "\\") + "\\" + inner, "refused"),
        ("public-dotdot-pct-backslash", public + "/" + ups("..").replace("/", "%5C") + "%5C" + inner, "refused"),
        ("public-dotdot-pct-slash", public + "/" + ups("%2e%2e").replace("/", "%2F") + "%2F" + inner, "refused"),
        ("public-dotdot-double-slash", public + "/" + ups("..").replace("/", "%252F") + "%252F" + inner, "refused"),
        ("public-dotdot-overlong", public + "/" + ups("%C0%AE%C0%AE") + "/" + inner, "refused"),
        ("public-dotdot-nul", public + "/x%00/" + ups("..") + "/" + inner, "refused"),
        ("public-dotdot-case", public.upper() + "/" + ups("..") + "/" + inner.upper(), "same"),
        ("public-dotdot-query", public + "/x?/" + ups("..") + "/" + inner, "public"),
        ("public-encoded-query", public + "/x%3F/" + ups("..") + "/" + inner, "unknown-or-same"),
    ]


def line(policy_name, technique, target, host, method, headers, body, fate, protected):
    case = {
        "id": f"{technique}:{method}:{protected['path']}",
        "method": method,
        "target": target,
        "headers": headers,
    }
    if host is not None:
        case["host"] = host
    if body is not None:
        case["body"] = body
    return case


def expectation(fate, protected, public, unknown):
    if fate == "refused":
        return {"status": 400}
    if fate == "same":
        return dict(protected["expect"])
    if fate == "public":
        if protected["method"] in public["methods"] or public["monitor"]:
            return dict(public["expect"])
        return {"status": 405, "api": public["expect"]["api"]}
    if fate == "unknown-or-same":
        return dict(unknown["expect"])
    if fate == "suffix":
        # Text appended to the last segment: still the route when that segment is a
        # parameter or under a glob, another (unknown) path when it is a literal.
        return dict(protected["expect"] if protected["tail"] != "literal" else unknown["expect"])
    raise ValueError(fate)


# Techniques Envoy's HTTP/1.1 codec refuses itself, whatever the HCM settings: a
# fragment in the target, a target that starts with `\`.
BY_ENVOY = {"fragment": 400, "backslash": 400}
# What Envoy with the recommended settings does before stakeguard sees the request:
# `path_with_escaped_slashes_action: REJECT_REQUEST` and its codec refuse escaped
# separators and NUL; `normalize_path` turns `\` into `/`, resolves `..` (also `..;`)
# and clamps it at the root, so the request reaches the route it names ("same"); a
# `..` after an empty segment removes the empty one, which Envoy then forwards as the
# path it wrote (another, unknown path: "unknown").
RECOMMENDED = {
    **{t: "envoy-400" for t in ["backslash-pct", "backslash-pct-lower", "slash-pct", "slash-pct-lower",
                                "nul-pct", "nul-pct-inner", "public-dotdot-pct-backslash",
                                "public-dotdot-pct-slash", "public-dotdot-nul"]},
    **{t: "same" for t in ["dotdot-above-root", "dotdot-above-root-pct", "param-dotdot", "backslash-inner",
                           "public-dotdot-semicolon", "public-dotdot-backslash"]},
    "dotdot-slashes": "unknown",
}
BOTH_PROFILES = ("default", "recommended")


def by_envoy(status):
    return {p: {"status": status, "by": "envoy"} for p in BOTH_PROFILES}


def corpus(name, host, protected_routes, public, unknown, extras):
    cases = []
    for protected in protected_routes:
        base_headers = protected.get("headers", [])
        body = protected.get("body")
        techniques = spellings(protected["path"]) + under_public(public["path"], protected["path"])
        for technique, target, fate in techniques:
            case = line(name, technique, target, host, protected["method"], base_headers, body, fate, protected)
            case["expect"] = expectation(fate, protected, public, unknown)
            if technique in BY_ENVOY:
                case["envoy"] = by_envoy(BY_ENVOY[technique])
            elif technique in RECOMMENDED:
                fate = RECOMMENDED[technique]
                case["envoy"] = {"recommended": {"status": 400, "by": "envoy"} if fate == "envoy-400"
                                 else dict(protected["expect"] if fate == "same" else unknown["expect"])}
            cases.append(case)
    cases.extend(extras)
    ids = [c["id"] for c in cases]
    assert len(ids) == len(set(ids)), "duplicate ids"
    with open(os.path.join(HERE, name + ".jsonl"), "w") as f:
        for c in cases:
            f.write(json.dumps(c, separators=(",", ":")) + "\n")
    return len(cases)


def extra(technique, method, target, host, headers, expect, body=None, envoy=None):
    case = {"id": technique, "method": method, "target": target, "headers": headers}
    if host is not None:
        case["host"] = host
    if body is not None:
        case["body"] = body
    case["expect"] = expect
    if envoy:
        case["envoy"] = envoy
    return case


BANK = "bank.example.com"
ACCOUNTS = {"path": "/api/v2/accounts/1000", "method": "GET", "tail": "param",
            "expect": {"status": 401, "api": "accounts v2"}}
TRANSFERS = {"path": "/api/v2/transfers", "method": "POST", "tail": "literal",
             "headers": [["content-type", "application/json"]], "body": '{"to":"x","amount":1}',
             "expect": {"status": 401, "api": "transfers v2"}}
STATEMENTS = {"path": "/api/v0/statements/2026/01", "method": "GET", "tail": "glob",
              "expect": {"status": 410, "api": "statements v0"}}
RATES = {"path": "/api/v1/rates", "methods": ["GET"], "monitor": False, "expect": {"forwarded": True, "api": "rates v1"}}
BANK_UNKNOWN = {"expect": {"status": 404}}

big = "a" * 70000
bank_extras = [
    extra("absolute-form", "GET", "http://bank.example.com/api/v2/accounts/1000", BANK, [],
          {"status": 400}, envoy={"default": {"status": 401}, "recommended": {"status": 401}}),
    extra("absolute-form-other-host", "GET", "http://evil.example.net/api/v2/accounts/1000", BANK, [],
          {"status": 400}, envoy={"default": {"status": 401}, "recommended": {"status": 401}}),
    extra("absolute-form-public-host-path", "GET", "http://bank.example.com/api/v1/rates/../../v2/accounts/1000", BANK, [],
          {"status": 400}, envoy={"default": {"status": 401}, "recommended": {"status": 401}}),
    extra("asterisk-form", "GET", "*", BANK, [], {"status": 400},
          envoy=by_envoy(400)),
    extra("relative-target", "GET", "api/v2/accounts/1000", BANK, [], {"status": 400},
          envoy=by_envoy(400)),
    extra("host-upper", "GET", "/api/v2/accounts/1000", "BANK.EXAMPLE.COM", [], {"status": 401, "api": "accounts v2"}),
    extra("host-trailing-dot", "GET", "/api/v2/accounts/1000", "bank.example.com.", [], {"status": 401, "api": "accounts v2"}),
    extra("host-port", "GET", "/api/v2/accounts/1000", "bank.example.com:8443", [], {"status": 401, "api": "accounts v2"}),
    extra("host-missing", "GET", "/api/v2/accounts/1000", None, [], {"status": 401, "api": "accounts v2"}),
    extra("host-duplicated", "GET", "/api/v2/accounts/1000", BANK, [["host", "evil.example.net"]],
          {"status": 401, "api": "accounts v2"}),
    extra("method-lower", "get", "/api/v2/accounts/1000", BANK, [], {"status": 401, "api": "accounts v2"},
          envoy=by_envoy(400)),
    extra("method-not-allowed", "DELETE", "/api/v2/accounts/1000", BANK, [], {"status": 405, "api": "accounts v2"}),
    extra("method-not-allowed-case-path", "DELETE", "/API/V2/ACCOUNTS/1000", BANK, [], {"status": 405, "api": "accounts v2"}),
    extra("method-override-on-public", "GET", "/api/v1/rates/eur", BANK,
          [["x-http-method-override", "DELETE"]], {"status": 400}),
    extra("method-override-x-http-method", "GET", "/api/v1/rates/eur", BANK,
          [["x-http-method", "PUT"]], {"status": 400}),
    extra("method-override-x-method-override", "GET", "/api/v1/rates/eur", BANK,
          [["x-method-override", "POST"]], {"status": 400}),
    extra("method-override-protected", "POST", "/api/v2/accounts/1000", BANK,
          [["x-http-method-override", "GET"]], {"status": 400}),
    extra("url-override-original", "GET", "/api/v1/rates/eur", BANK,
          [["x-original-url", "/api/v2/accounts/1000"]], {"status": 400}),
    extra("url-override-rewrite", "GET", "/api/v1/rates/eur", BANK,
          [["x-rewrite-url", "/api/v2/accounts/1000"]], {"status": 400}),
    extra("url-override-on-protected", "GET", "/api/v2/accounts/1000", BANK,
          [["x-original-url", "/api/v1/rates/eur"]], {"status": 400}),
    extra("authorization-empty", "GET", "/api/v2/accounts/1000", BANK, [["authorization", ""]],
          {"status": 401, "api": "accounts v2"}),
    extra("authorization-duplicated-empty", "GET", "/api/v2/accounts/1000", BANK,
          [["authorization", ""], ["authorization", ""]], {"status": 401, "api": "accounts v2"}),
    extra("user-duplicated", "GET", "/api/v2/accounts/1000", BANK,
          [["x-user-id", "alice"], ["x-user-id", "bob"]], {"status": 401, "api": "accounts v2"}),
    extra("forwarded-for-spoof", "GET", "/api/v2/accounts/1000", BANK,
          [["x-forwarded-for", "127.0.0.1"], ["x-forwarded-for", "10.0.0.1"]], {"status": 401, "api": "accounts v2"}),
    extra("partner-san-header-spoof", "GET", "/api/v2/accounts/1000", BANK,
          [["x-forwarded-client-cert", "URI=spiffe://partners.example/aggregator"]], {"status": 401, "api": "accounts v2"}),
    extra("oversized-header", "GET", "/api/v2/accounts/1000", BANK, [["x-padding", big]],
          {"status": 401, "api": "accounts v2"},
          envoy=by_envoy(431)),
    extra("oversized-cookie", "GET", "/api/v2/accounts/1000", BANK, [["cookie", "sid=" + big]],
          {"status": 401, "api": "accounts v2"},
          envoy=by_envoy(431)),
    extra("many-cookies", "GET", "/api/v2/accounts/1000", BANK,
          [["cookie", "; ".join(f"c{i}=v" for i in range(2000))]], {"status": 401, "api": "accounts v2"}),
    extra("oversized-path", "GET", "/api/v2/accounts/" + "1" * 70000, BANK, [],
          {"status": 401, "api": "accounts v2"},
          envoy=by_envoy(431)),
    extra("login-upper", "POST", "/API/V2/LOGIN", BANK, [["content-type", "application/json"]],
          {"forwarded": True, "api": "login v2"}, body='{"username":"alice","password":"x"}'),
    extra("login-get", "GET", "/api/v2/login", BANK, [], {"status": 405, "api": "login v2"}),
    extra("public-plain", "GET", "/api/v1/rates/eur", BANK, [], {"forwarded": True, "api": "rates v1"}),
    extra("unknown-plain", "GET", "/admin", BANK, [], {"status": 404}),
]

SHOP = "shop.example.com"
# A cart without a session is allowed (the session control judges sessions it has
# seen), so the cart requests come from a foreign origin: the checkout tier's CORS
# refuses them with 403, the catalogue (monitor) and unknown routes let them through.
EVIL_ORIGIN = [["origin", "https://evil.example.net"]]
CART = {"path": "/api/v3/cart/items", "method": "GET", "tail": "glob", "headers": EVIL_ORIGIN,
        "expect": {"status": 403, "api": "checkout v3"}}
ORDERS = {"path": "/api/v3/orders", "method": "GET", "tail": "literal",
          "expect": {"status": 405, "api": "checkout v3"}}
SIGNIN = {"path": "/signin", "method": "PUT", "tail": "literal",
          "expect": {"status": 405, "api": "signin v1"}}
PRODUCTS = {"path": "/api/v1/products", "methods": ["GET", "HEAD"], "monitor": True, "expect": {"forwarded": True, "api": "catalogue v1"}}
SHOP_UNKNOWN = {"expect": {"forwarded": True}}

shop_extras = [
    extra("shop-host-upper", "GET", "/api/v3/cart/items", "SHOP.EXAMPLE.COM", EVIL_ORIGIN, {"status": 403, "api": "checkout v3"}),
    extra("shop-host-trailing-dot", "GET", "/api/v3/cart/items", "shop.example.com.", EVIL_ORIGIN, {"status": 403, "api": "checkout v3"}),
    extra("shop-host-port", "GET", "/api/v3/cart/items", "shop.example.com:443", EVIL_ORIGIN, {"status": 403, "api": "checkout v3"}),
    extra("shop-host-port-dot", "GET", "/api/v3/cart/items", "shop.example.com.:8080", EVIL_ORIGIN, {"status": 403, "api": "checkout v3"}),
    extra("shop-host-subdomain", "GET", "/api/v3/cart/items", "www.shop.example.com", [], {"forwarded": True}),
    extra("shop-absolute-form", "GET", "http://shop.example.com/api/v3/cart/items", "other.example.net", EVIL_ORIGIN,
          {"status": 400}, envoy={"default": {"status": 403}, "recommended": {"status": 403}}),
    extra("shop-method-override", "GET", "/api/v1/products/1", SHOP,
          [["x-http-method-override", "DELETE"]], {"status": 400}),
    extra("shop-url-override", "GET", "/api/v1/products/1", SHOP,
          [["x-original-url", "/api/v3/cart/items"]], {"status": 400}),
    extra("shop-url-override-unknown", "GET", "/robots.txt", SHOP,
          [["x-rewrite-url", "/api/v3/cart/items"]], {"status": 400}),
    extra("shop-cookie-duplicated-empty", "GET", "/api/v3/cart/items", SHOP,
          EVIL_ORIGIN + [["cookie", "cart_session="], ["cookie", "cart_session="]], {"status": 403, "api": "checkout v3"}),
    extra("shop-oversized-cookie", "GET", "/api/v3/cart/items", SHOP, EVIL_ORIGIN + [["cookie", "uid=" + big]],
          {"status": 403, "api": "checkout v3"},
          envoy=by_envoy(431)),
    extra("shop-signin-upper", "POST", "/SIGNIN", SHOP, [["content-type", "application/x-www-form-urlencoded"]],
          {"forwarded": True, "api": "signin v1"}, body="email=a%40b.c&password=x"),
    extra("shop-public-plain", "GET", "/api/v1/products/1", SHOP, [], {"forwarded": True, "api": "catalogue v1"}),
    extra("shop-unknown-plain", "GET", "/robots.txt", SHOP, [], {"forwarded": True}),
]

if __name__ == "__main__":
    n = corpus("bank", BANK, [ACCOUNTS, TRANSFERS, STATEMENTS], RATES, BANK_UNKNOWN, bank_extras)
    m = corpus("retailer", SHOP, [CART, ORDERS, SIGNIN], PRODUCTS, SHOP_UNKNOWN, shop_extras)
    print(f"bank.jsonl: {n} cases, retailer.jsonl: {m} cases")
