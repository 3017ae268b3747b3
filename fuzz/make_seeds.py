#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets from the repository's own test data:
policy documents (the examples and the bad policies), recorded traffic (the harness's
test recordings and the first records of the example traffic), and exchanges (the
example recordings and the bypass corpus in the `exchange` target's format, see
targets/src/lib.rs). Fuzzing adds to these directories; `cargo fuzz cmin` trims them."""

import glob
import hashlib
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
POLICIES = {"bank": 0, "retailer": 1, "minimal": 2}


def write(target, data):
    os.makedirs(os.path.join(HERE, "corpus", target), exist_ok=True)
    name = "seed-" + hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(HERE, "corpus", target, name), "wb") as f:
        f.write(data)


def exchange(request, response=None, source=None, advance=1000):
    head = [f"{request['method']} {request.get('path') or request.get('target')}"]
    host = request.get("authority") or request.get("host")
    if host:
        head.append(f"host: {host}")
    if source:
        head.append(f":source: {source}")
    head.append(f":advance: {advance}")
    head += [f"{n}: {v}" for n, v in request.get("headers", [])]
    body = request.get("body", "")
    part = "\n".join(head).encode() + b"\xff" + body.encode()
    if response:
        lines = [str(response["status"])] + [f"{n}: {v}" for n, v in response.get("headers", [])]
        part += b"\xff" + "\n".join(lines).encode()
    return part


# The host target's program (targets/src/host.rs): import numbers, operations and
# argument encodings.
IMPORT = {name: n for n, name in enumerate("""
    log get_log_level get_current_time_nanoseconds set_tick_period_milliseconds
    get_header_map_value get_header_map_pairs get_header_map_size add_header_map_value
    replace_header_map_value remove_header_map_value set_header_map_pairs get_buffer_bytes
    get_buffer_status set_buffer_bytes get_property set_property get_shared_data
    set_shared_data register_shared_queue resolve_shared_queue enqueue_shared_queue
    dequeue_shared_queue http_call grpc_call grpc_stream grpc_send grpc_cancel grpc_close
    define_metric increment_metric record_metric get_metric continue_stream close_stream
    send_local_response get_status set_effective_context done call_foreign_function
    fd_write fd_pwrite fd_tell fd_fdstat_get fd_readdir environ_get environ_sizes_get
    args_sizes_get clock_time_get clock_res_get random_get poll_oneoff path_readlink
    proc_exit""".split())}
YIELD, WRITE, MALLOC, TRAP, GROW = 0xF0, 0xF1, 0xF2, 0xF3, 0xF4


def lit(n):
    return bytes([n])


def slot(k):
    return bytes([0x40 | k])


def res(k):
    """A pointer to result word k."""
    return bytes([0x40 | (48 + k)])


def word(v):
    return b"\x80" + (v & 0xFFFFFFFF).to_bytes(4, "little")


def known(k):
    """Result word k as a value."""
    return bytes([0xC0 | k])


def memory_end(back=0):
    return bytes([0xC0 | (16 + back)])


def param(i):
    return bytes([0xC0 | (32 + i)])


def call(name, *args):
    return bytes([IMPORT[name]]) + b"".join(args)


def yields(value=lit(0)):
    return bytes([YIELD]) + value


def host_seeds():
    """Programs for the host target: each import called sanely in the order a filter
    would, then hostile variants (pointers past memory, a lying allocator, re-entry,
    traps in each phase)."""
    start = (call("log", lit(2), slot(5), lit(6)) + call("get_log_level", res(0))
             + call("set_tick_period_milliseconds", bytes([0x80 | 13]))
             + call("register_shared_queue", slot(11), lit(1), res(1))
             + call("define_metric", lit(0), slot(16), lit(8), res(2)) + yields(lit(1))
             + yields(lit(1)))
    headers = (call("get_header_map_value", lit(0), slot(0), lit(5), res(3), res(4))
               + call("get_header_map_pairs", lit(0), res(5), res(6))
               + call("get_header_map_size", lit(0), res(7))
               + call("add_header_map_value", lit(0), slot(5), lit(6), slot(13), lit(3))
               + call("replace_header_map_value", lit(0), slot(0), lit(5), slot(13), lit(3))
               + call("remove_header_map_value", lit(0), slot(4), lit(12))
               + call("get_property", slot(6), lit(12), res(8), res(9))
               + call("set_property", slot(13), lit(3), slot(13), lit(3))
               + call("set_shared_data", slot(13), lit(3), slot(0), lit(5), lit(0))
               + call("get_shared_data", slot(13), lit(3), res(10), res(11), res(12))
               + call("enqueue_shared_queue", known(1), slot(0), lit(5))
               + call("increment_metric", known(2), lit(5), lit(0))
               + call("get_metric", known(2), res(13))
               + call("get_current_time_nanoseconds", res(14)))
    callouts = (call("http_call", slot(8), lit(2), slot(15), lit(61), slot(13), lit(3), lit(0),
                     lit(0), word(1000), res(3))
                + call("grpc_call", slot(8), lit(2), slot(18), lit(3), slot(19), lit(6), lit(0),
                       lit(0), slot(13), lit(3), word(1000), res(4)))
    bodies = (call("get_buffer_status", lit(0), res(5), res(6))
              + call("get_buffer_bytes", lit(0), lit(0), param(1), res(7), res(8))
              + call("set_buffer_bytes", lit(0), lit(0), lit(2), slot(13), lit(3)))
    answers = (call("get_header_map_pairs", lit(6), res(5), res(6))
               + call("get_buffer_bytes", lit(4), lit(0), param(3), res(7), res(8))
               + call("dequeue_shared_queue", known(1), res(9), res(10))
               + call("get_status", res(11), res(12), res(13)))
    # A context, then request headers that stop for the callouts, the answers resuming.
    sane = (start + yields() + headers + callouts + yields(lit(1)) + answers
            + call("set_effective_context", param(0)) + call("continue_stream", lit(0))
            + yields() + bodies + yields() + bodies + yields() + headers + yields())
    write("host", b"\x06" + sane)
    write("host", b"\x0d" + sane)
    write("host", b"\x12" + start + yields() + call(
        "send_local_response", word(403), slot(5), lit(6), slot(13), lit(3), slot(14), lit(21),
        word(0xFFFFFFFF)) + yields(lit(1)) + call("close_stream", lit(1)) + call("done"))
    # Pointers past the end of memory, lengths that wrap, unknown types.
    hostile = b"".join(call(name, *([memory_end(2)] * 12)) for name in IMPORT if name != "proc_exit")
    hostile += b"".join(call(name, *([word(0xFFFFFFF0)] * 12)) for name in IMPORT
                        if name != "proc_exit")
    write("host", b"\x06" + start + yields() + hostile + yields() + hostile)
    # The allocator lies: a block past memory, a block sticking out, 0, a trap, re-entry.
    for mode, value in [(1, word(0xFFFFFF00)), (5, lit(3)), (3, lit(0)), (4, word(8)),
                        (6, lit(0)), (2, lit(0))]:
        write("host", b"\x05" + start + yields() + bytes([MALLOC, mode]) + value + headers
              + yields() + headers + answers + bodies + bytes([MALLOC, 0]) + lit(0) + headers)
    # A trap in each phase in turn.
    for n in range(8):
        write("host", bytes([n % 3 | 4]) + start + yields() * n + bytes([TRAP]))
    # WASI: an iovec over slot 5 written to stdout, random bytes, clocks, exit.
    iovec = (4096 + 64 * 5).to_bytes(4, "little") + (6).to_bytes(4, "little")
    write("host", b"\x06" + start + bytes([WRITE]) + slot(20) + lit(8) + iovec
          + call("fd_write", lit(1), slot(20), lit(1), res(0))
          + call("random_get", slot(21), lit(32)) + call("clock_time_get", lit(0), lit(0),
                                                          lit(0), res(0))
          + call("environ_sizes_get", res(0), res(1)) + call("proc_exit", lit(3)))


def pb_varint(n):
    out = b""
    while n >= 0x80:
        out += bytes([n & 0x7F | 0x80])
        n >>= 7
    return out + bytes([n])


def pb_field(number, value):
    """A varint field for an int, a length-delimited one for bytes."""
    if isinstance(value, int):
        return pb_varint(number << 3) + pb_varint(value)
    return pb_varint(number << 3 | 2) + pb_varint(len(value)) + value


def rls_status(code, limit=None, remaining=None, reset_s=None):
    out = pb_field(1, code)
    if limit is not None:
        out += pb_field(2, pb_field(1, limit) + pb_field(2, 2))
    if remaining is not None:
        out += pb_field(3, remaining)
    if reset_s is not None:
        out += pb_field(4, pb_field(1, reset_s) + pb_field(2, 5_000_000))
    return out


def service_answer_seeds():
    """RateLimitResponses as envoyproxy/ratelimit and Limitador send them: OK and
    OVER_LIMIT, with per-descriptor statuses (rate limit, username, client IP) and
    response headers, and the shapes at the decoder's edges."""
    header = lambda k, v, f=2: pb_field(3, pb_field(1, k) + pb_field(f, v))
    ok = [rls_status(1, 25, 24, 59), rls_status(1, 4, 4, 3599), rls_status(1, 4, 3, 3599)]
    write("service_answer", pb_field(1, 1) + b"".join(pb_field(2, s) for s in ok))
    write("service_answer", pb_field(1, 1) + b"".join(pb_field(2, s) for s in ok)
          + header(b"RateLimit-Remaining", b"24") + header(b"x-raw", b"1", 3))
    for over in range(3):
        statuses = [rls_status(2 if i == over else 1, 4, 0, 60) for i in range(3)]
        write("service_answer", pb_field(1, 2) + b"".join(pb_field(2, s) for s in statuses))
    write("service_answer", pb_field(1, 2))
    write("service_answer", pb_field(1, 1) + header(b":status", b"200") + header(b"x", b"a\r\nb"))
    write("service_answer", b"")


def main():
    for path in glob.glob(os.path.join(ROOT, "policies/examples/*.json")) + \
            glob.glob(os.path.join(ROOT, "harness/tests/data/bad-policies/[0-9]*.json")):
        write("policy", open(path, "rb").read())

    for path in ["sample.har", "bad.har", "bad.jsonl", "conformance.jsonl", "tap-buffered.json",
                 "tap-streamed.jsonl"] + [os.path.join("tap-dir", f) for f in
                                          os.listdir(os.path.join(ROOT, "harness/tests/data/tap-dir"))]:
        write("traffic", open(os.path.join(ROOT, "harness/tests/data", path), "rb").read())
    for name in POLICIES:
        path = os.path.join(ROOT, f"envoy-examples/traffic/{name}.jsonl")
        if os.path.exists(path):
            lines = open(path, "rb").read().splitlines(keepends=True)
            write("traffic", b"".join(lines[:20]))
            # Runs of eight records through the policy they were recorded for.
            records = [json.loads(l) for l in lines[:64]]
            for i in range(0, len(records), 8):
                parts = [exchange(r["request"], r.get("response"), r.get("source"))
                         for r in records[i:i + 8]]
                write("exchange", bytes([POLICIES[name]]) + b"\xfe".join(parts))

    for name in ["bank", "retailer"]:
        cases = [json.loads(l) for l in open(os.path.join(ROOT, f"tests/data/bypass/{name}.jsonl"))]
        for case in cases[::5]:
            if len(json.dumps(case)) < 4000:
                write("exchange", bytes([POLICIES[name]]) + exchange(case, {"status": 200}, "10.0.0.1"))

    host_seeds()
    service_answer_seeds()


if __name__ == "__main__":
    main()
