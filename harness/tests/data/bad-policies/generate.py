#!/usr/bin/env python3
"""Writes the invalid policy documents of harness/tests/bad_policies.rs: each one the
bank or retailer example with one mistake (or a text that is no policy at all), named
NN-what.json, and manifest.json mapping each file to the JSON path one of its errors
must name (written here, by hand, independently of what the module answers; "(document)"
for the document as a whole). The exact
messages are the golden file harness/tests/golden/bad_policies.txt
(`UPDATE_GOLDEN=1 cargo test -p stakeguard-harness --test bad_policies` rewrites it).
"""

import copy
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..", "..", "..")


def example(name):
    with open(os.path.join(ROOT, "policies", "examples", name + ".json")) as f:
        return json.load(f)


BANK = example("bank")
SHOP = example("retailer")


def bank(change):
    doc = copy.deepcopy(BANK)
    change(doc)
    return json.dumps(doc, indent=2)


def shop(change):
    doc = copy.deepcopy(SHOP)
    change(doc)
    return json.dumps(doc, indent=2)


def setter(*path_and_value):
    *path, value = path_and_value

    def change(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
    return change


def deleter(*path):
    def change(doc):
        node = doc
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]
    return change


def chain(*changes):
    def change(doc):
        for c in changes:
            c(doc)
    return change


def add_api(api):
    return lambda doc: doc["apis"].append(api)


API = {"name": "extra", "version": "v1", "owner": "team-x", "tier": "standard",
       "routes": [{"path": "/api/v1/extra"}]}


def api_with(**fields):
    api = copy.deepcopy(API)
    api.update(fields)
    return add_api(api)


# (name, text, the JSON path an error must name; "" for the document itself)
CASES = [
    # Not a policy document at all.
    ("not-json", "revision: 1\n", ""),
    ("empty", "", ""),
    ("array", "[]", ""),
    ("string", '"policy"', ""),
    ("truncated", bank(lambda d: None)[:200], ""),
    ("trailing-comma", '{"revision": "1", "apis": [],}', ""),
    ("duplicate-key", '{"revision": "1", "revision": "2", "apis": []}', ""),
    # Top level.
    ("missing-revision", bank(deleter("revision")), "revision"),
    ("revision-number", bank(setter("revision", 7)), "revision"),
    ("unknown-top-field", bank(setter("tier", {})), "tier"),
    ("apis-object", bank(setter("apis", {})), "apis"),
    # Identity.
    ("trusted-hops-negative", bank(setter("identity", "client_ip", "trusted_hops", -1)), "identity.client_ip.trusted_hops"),
    ("trusted-hops-string", bank(setter("identity", "client_ip", "trusted_hops", "1")), "identity.client_ip.trusted_hops"),
    ("user-source-two-kinds", bank(setter("identity", "user", 0, {"header": "x-user-id", "cookie": "uid"})), "identity.user[0]"),
    ("user-source-empty", bank(setter("identity", "user", 0, {})), "identity.user[0]"),
    ("user-source-unknown", bank(setter("identity", "user", 1, {"jwt": "sub"})), "identity.user[1].jwt"),
    # Notify and state.
    ("alertmanager-no-cluster", bank(deleter("notify", "alertmanager", "cluster")), "notify.alertmanager.cluster"),
    ("alertmanager-timeout-zero", bank(setter("notify", "alertmanager", "timeout", "0s")), "notify.alertmanager.timeout"),
    ("dedupe-window-unit", bank(setter("notify", "alertmanager", "dedupe_window", "5 minutes")), "notify.alertmanager.dedupe_window"),
    ("state-slots-zero", bank(setter("state", {"slots": 0})), "state.slots"),
    ("state-slots-huge", bank(setter("state", {"slots": 10 ** 12})), "state.slots"),
    ("state-namespace-empty", bank(setter("state", {"namespace": ""})), "state.namespace"),
    # Tiers and their controls.
    ("on-error-unknown", bank(setter("tiers", "critical", "on_error", "fail_maybe")), "tiers.critical.on_error"),
    ("mode-unknown", bank(setter("tiers", "standard", "mode", "enforcing")), "tiers.standard.mode"),
    ("login-window-typo", bank(setter("tiers", "critical", "login", "windw", "5m")), "tiers.critical.login.windw"),
    ("login-max-failures-zero", bank(setter("tiers", "critical", "login", "max_failures", 0)), "tiers.critical.login.max_failures"),
    ("login-action-unknown", bank(setter("tiers", "critical", "login", "action", "ban")), "tiers.critical.login.action"),
    ("login-lockout-unreadable", bank(setter("tiers", "critical", "login", "lockout", "30")), "tiers.critical.login.lockout"),
    ("login-delay-without-delay-action", bank(setter("tiers", "critical", "login", "delay", "1s")), "tiers.critical.login.delay"),
    ("spraying-max-usernames-one", bank(setter("tiers", "critical", "login", "spraying", {"max_usernames": 1, "window": "15m"})), "tiers.critical.login.spraying.max_usernames"),
    ("rate-limit-requests-zero", bank(setter("tiers", "standard", "rate_limit", "requests", 0)), "tiers.standard.rate_limit.requests"),
    ("rate-limit-key-unknown", bank(setter("tiers", "standard", "rate_limit", "key", "session")), "tiers.standard.rate_limit.key"),
    ("rate-limit-partner-key-without-partners", bank(chain(deleter("partners"), setter("tiers", "standard", "rate_limit", "key", "partner"))), "tiers.standard.rate_limit.key"),
    ("session-idle-zero", bank(setter("tiers", "critical", "session", "idle_timeout", "0m")), "tiers.critical.session.idle_timeout"),
    ("same-site-unknown", bank(setter("tiers", "critical", "response", "cookies", "same_site", "Sometimes")), "tiers.critical.response.cookies.same_site"),
    ("auth-required-cookie-header", bank(setter("tiers", "critical", "auth", "required", ["cookie"])), "tiers.critical.auth.required[0]"),
    ("auth-any-of-one", bank(setter("tiers", "critical", "auth", {"any_of": ["authorization"]})), "tiers.critical.auth.any_of"),
    ("body-max-bytes-negative", bank(setter("tiers", "critical", "body", "max_bytes", -5)), "tiers.critical.body.max_bytes"),
    ("incident-severity-unknown", bank(setter("tiers", "critical", "incidents", "login_lockout", "wake-everyone")), "tiers.critical.incidents.login_lockout"),
    ("incident-event-unknown", bank(setter("tiers", "critical", "incidents", "login_lockdown", "page")), "tiers.critical.incidents.login_lockdown"),
    ("cors-wildcard-with-credentials", bank(setter("tiers", "critical", "cors", "allow_origins", ["*"])), "tiers.critical.cors.allow_origins[0]"),
    ("tier-login-no-api-takes", bank(deleter("apis", 0, "login")), "tiers.critical.login"),
    # APIs.
    ("api-unknown-tier", bank(setter("apis", 1, "tier", "gold")), "apis[1].tier"),
    ("api-missing-owner", bank(deleter("apis", 2, "owner")), "apis[2].owner"),
    ("api-duplicate", bank(add_api(copy.deepcopy(BANK["apis"][1]))), "apis[7]"),
    ("api-name-empty", bank(setter("apis", 3, "name", "")), "apis[3].name"),
    ("api-unknown-field", bank(setter("apis", 0, "tierr", "critical")), "apis[0].tierr"),
    ("route-regex", bank(setter("apis", 1, "routes", 1, "path", "/api/v2/accounts/(\\d+)")), "apis[1].routes[1]"),
    ("route-no-slash", bank(setter("apis", 1, "routes", 0, "path", "api/v2/accounts")), "apis[1].routes[0]"),
    ("route-percent", bank(setter("apis", 1, "routes", 0, "path", "/api/v2/%61ccounts")), "apis[1].routes[0]"),
    ("route-semicolon", bank(setter("apis", 1, "routes", 0, "path", "/api/v2/accounts;v=1")), "apis[1].routes[0]"),
    ("route-dot-segment", bank(setter("apis", 1, "routes", 0, "path", "/api/v2/../accounts")), "apis[1].routes[0]"),
    ("route-glob-middle", bank(setter("apis", 6, "routes", 0, "path", "/api/**/rates")), "apis[6].routes[0]"),
    ("route-param-twice", bank(setter("apis", 1, "routes", 1, "path", "/api/v2/accounts/{id}/{id}")), "apis[1].routes[1]"),
    ("route-method-empty", bank(setter("apis", 0, "routes", 0, "methods", [""])), "apis[0].routes[0]"),
    ("route-method-space", bank(setter("apis", 0, "routes", 0, "methods", ["PO ST"])), "apis[0].routes[0]"),
    ("route-host-bad", bank(setter("apis", 1, "routes", 0, "host", "bank example com")), "apis[1].routes[0]"),
    ("route-conflict", bank(api_with(routes=[{"path": "/api/v2/accounts", "methods": ["GET"]}])), "apis[7].routes[0]"),
    ("route-conflict-by-case", bank(api_with(routes=[{"path": "/API/V2/Accounts", "methods": ["GET"]}])), "apis[7].routes[0]"),
    ("routes-empty", bank(setter("apis", 6, "routes", [])), "apis[6].routes"),
    ("lifecycle-sunset-date-only", bank(setter("apis", 4, "lifecycle", "sunset", "2027-03-31")), "apis[4].lifecycle.sunset"),
    ("lifecycle-deprecated-without-date", bank(deleter("apis", 4, "lifecycle", "deprecated_at")), "apis[4].lifecycle.deprecated_at"),
    ("lifecycle-status-unknown", bank(setter("apis", 5, "lifecycle", "status", "dead")), "apis[5].lifecycle.status"),
    ("ownership-param-unknown", bank(setter("apis", 1, "ownership", "bind", 0, "param", "acct")), "apis[1].ownership.bind[0].param"),
    ("claims-rule-two-tests", bank(setter("apis", 2, "routes", 0, "require", 0, "equals", "x")), "apis[2].routes[0].require[0]"),
    ("quota-limit-zero", bank(setter("apis", 2, "quotas", 0, "limit", 0)), "apis[2].quotas[0].limit"),
    ("quota-methods-unserved", bank(setter("apis", 2, "quotas", 0, "methods", ["DELETE"])), "apis[2].quotas[0].methods"),
    ("quota-pointer-bad", bank(setter("apis", 2, "quotas", 1, "key", {"json_pointer": "to"})), "apis[2].quotas[1].key.json_pointer"),
    ("username-pointer-bad", bank(setter("apis", 0, "login", "username", {"json_pointer": "username"})), "apis[0].login.username.json_pointer"),
    # Unknown routes and partners.
    ("unknown-routes-action", bank(setter("unknown_routes", "action", "drop")), "unknown_routes.action"),
    ("partner-match-two-kinds", bank(setter("partners", 0, "match", {"uri_san": "spiffe://x", "client_cidr": "10.0.0.0/8"})), "partners[0].match"),
    ("partner-cidr-bad", shop(setter("partners", 1, "match", "client_cidr", "198.51.100.0/33")), "partners[1].match.client_cidr"),
    ("partner-exempt-unknown", bank(setter("partners", 0, "exempt", ["rate_limits"])), "partners[0].exempt[0]"),
    ("ambiguous-paths-mode", bank(setter("ambiguous_paths", {"mode": "lenient"})), "ambiguous_paths.mode"),
    # The retailer's own shapes.
    ("form-field-empty", shop(setter("apis", 0, "login", "username", {"form_field": ""})), "apis[0].login.username"),
    ("wildcard-host-bare", shop(setter("apis", 3, "routes", 0, "host", "*")), "apis[3].routes[0]"),
    ("failure-status-bad", shop(setter("apis", 2, "login", "failure_statuses", [99])), "apis[2].login.failure_statuses[0]"),
]

if __name__ == "__main__":
    for old in os.listdir(HERE):
        if old.endswith(".json"):
            os.remove(os.path.join(HERE, old))
    manifest = {}
    for n, (name, text, path) in enumerate(CASES, 1):
        file = f"{n:02d}-{name}.json"
        with open(os.path.join(HERE, file), "w") as f:
            f.write(text)
        manifest[file] = path or "(document)"
    with open(os.path.join(HERE, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"{len(CASES)} documents")
