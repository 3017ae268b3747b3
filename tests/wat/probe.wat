;; A small proxy-wasm module (ABI 0.2.1) that is not stakeguard, for the Envoy-vs-harness
;; agreement tests: it answers some requests itself, calls out, traps, and keeps per-VM
;; state, whatever its configuration (which need not be JSON).
;;
;; By request path:
;;   /deny     local reply 403 with body `denied: 100% ~é` (to a gRPC request Envoy makes
;;             it a trailers-only 200 with grpc-status 7 and grpc-message
;;             `denied: 100%25 %7E%C3%A9`)
;;   /trap     traps in on_request_headers
;;   /c/NAME   pauses, calls cluster NAME (GET /check); a 2xx answer continues the
;;             request, any other (or a failure) is a local reply 403 `callout refused`
;;   other     goes on
;; Every response gets `x-count: N`, N the number of requests this VM has seen (mod 10):
;; per-VM state, so a request on another worker shows another count.
(module
  (import "env" "proxy_get_header_map_value"
    (func $get_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_send_local_response"
    (func $local_reply (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_http_call"
    (func $http_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context"
    (func $set_context (param i32) (result i32)))
  (import "env" "proxy_continue_stream"
    (func $continue (param i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (global $count (mut i32) (i32.const 0))
  (global $pending (mut i32) (i32.const 0))
  (data (i32.const 256) ":path")
  (data (i32.const 272) "/deny")
  (data (i32.const 288) "/trap")
  (data (i32.const 304) "/c/")
  (data (i32.const 320) "denied: 100% ~\c3\a9")
  ;; The callout's headers, serialized: 3 pairs (:method GET, :path /check,
  ;; :authority probe), then the names and values each NUL-terminated.
  (data (i32.const 368)
    "\03\00\00\00"
    "\07\00\00\00\03\00\00\00" "\05\00\00\00\06\00\00\00" "\0a\00\00\00\05\00\00\00"
    ":method\00GET\00:path\00/check\00:authority\00probe\00")
  (data (i32.const 512) ":status")
  (data (i32.const 528) "callout refused")
  (data (i32.const 544) "x-count")
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_delete") (param i32))
  ;; Whether the n bytes at $a start with the m bytes at $b.
  (func $starts (param $a i32) (param $n i32) (param $b i32) (param $m i32) (result i32)
    (local $i i32)
    (if (i32.lt_u (local.get $n) (local.get $m)) (then (return (i32.const 0))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $m)))
        (if (i32.ne (i32.load8_u (i32.add (local.get $a) (local.get $i)))
                    (i32.load8_u (i32.add (local.get $b) (local.get $i))))
          (then (return (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (i32.const 1))
  (func $refuse
    (drop (call $local_reply (i32.const 403) (i32.const 0) (i32.const 0)
      (i32.const 528) (i32.const 15) (i32.const 0) (i32.const 0) (i32.const -1))))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (local $p i32) (local $n i32)
    (global.set $count (i32.add (global.get $count) (i32.const 1)))
    (drop (call $get_header (i32.const 0) (i32.const 256) (i32.const 5)
      (i32.const 1024) (i32.const 1028)))
    (local.set $p (i32.load (i32.const 1024)))
    (local.set $n (i32.load (i32.const 1028)))
    (if (i32.and (i32.eq (local.get $n) (i32.const 5))
                 (call $starts (local.get $p) (local.get $n) (i32.const 272) (i32.const 5)))
      (then
        (drop (call $local_reply (i32.const 403) (i32.const 0) (i32.const 0)
          (i32.const 320) (i32.const 16) (i32.const 0) (i32.const 0) (i32.const -1)))
        (return (i32.const 1))))
    (if (i32.and (i32.eq (local.get $n) (i32.const 5))
                 (call $starts (local.get $p) (local.get $n) (i32.const 288) (i32.const 5)))
      (then unreachable))
    (if (call $starts (local.get $p) (local.get $n) (i32.const 304) (i32.const 3))
      (then
        (if (call $http_call
              (i32.add (local.get $p) (i32.const 3)) (i32.sub (local.get $n) (i32.const 3))
              (i32.const 368) (i32.const 70) (i32.const 0) (i32.const 0)
              (i32.const 0) (i32.const 0) (i32.const 1000) (i32.const 1032))
          (then (call $refuse) (return (i32.const 1))))
        (global.set $pending (local.get $ctx))
        (return (i32.const 1))))
    (i32.const 0))
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
    (drop (call $set_context (global.get $pending)))
    (if (i32.eqz (call $get_header (i32.const 6) (i32.const 512) (i32.const 7)
                   (i32.const 1024) (i32.const 1028)))
      (then
        (if (i32.eq (i32.load8_u (i32.load (i32.const 1024))) (i32.const 50))
          (then (drop (call $continue (i32.const 0))) (return)))))
    (call $refuse))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (i32.store8 (i32.const 560)
      (i32.add (i32.const 48) (i32.rem_u (global.get $count) (i32.const 10))))
    (drop (call $add_header (i32.const 2) (i32.const 544) (i32.const 7)
      (i32.const 560) (i32.const 1)))
    (i32.const 0))
)
