;; A small proxy-wasm module (ABI 0.2.1) that is not stakeguard, for the Envoy-vs-harness
;; agreement tests: it answers some requests itself, calls out, traps, and keeps per-VM
;; state, whatever its configuration (which need not be JSON).
;;
;; By request path:
;;   /deny     local reply 403 with body `denied: 100% ~é` (to a gRPC request Envoy makes
;;             it a trailers-only 200 with grpc-status 7 and grpc-message
;;             `denied: 100%25 %7E%C3%A9`)
;;   /trap     traps in on_request_headers
;;   /c/NAME   pauses, calls cluster NAME (GET /check, 500 ms timeout); a 2xx answer
;;             continues the request (with `x-check: V` on its response when the
;;             answer's trailers have `x-check: V`), any other answer is a local reply
;;             `callout refused` with the answer's status, a failure (no answer) one
;;             with 502; a call that cannot be made, one with 403
;;   /g/NAME   pauses, makes a gRPC call (`probe.Check/Check`, message `ping`, 500 ms
;;             timeout) to cluster NAME (the name is not a GrpcService proto, so Envoy
;;             takes it as the cluster's); a message continues the request with
;;             `x-grpc: <message>` on its response, a close with status S is a local
;;             reply 400 + S whose body is the close's message (proxy_get_status)
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
  (import "env" "proxy_grpc_call"
    (func $grpc_call (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_status"
    (func $get_status (param i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
  (global $count (mut i32) (i32.const 0))
  (global $pending (mut i32) (i32.const 0))
  ;; A header for the paused request's response, set by a callout's answer:
  ;; name (pointer, length) and value (pointer, length); no header when the name is 0.
  (global $extra_name (mut i32) (i32.const 0))
  (global $extra_name_len (mut i32) (i32.const 0))
  (global $extra_value (mut i32) (i32.const 0))
  (global $extra_value_len (mut i32) (i32.const 0))
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
  (data (i32.const 576) "/g/")
  (data (i32.const 592) "probe.Check")
  (data (i32.const 608) "Check")
  (data (i32.const 616) "ping")
  (data (i32.const 624) "x-grpc")
  (data (i32.const 640) "x-check")
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
  (func $refuse (param $status i32)
    (drop (call $local_reply (local.get $status) (i32.const 0) (i32.const 0)
      (i32.const 528) (i32.const 15) (i32.const 0) (i32.const 0) (i32.const -1))))
  ;; The number written by the three ASCII digits at $p.
  (func $digits3 (param $p i32) (result i32)
    (i32.add
      (i32.add
        (i32.mul (i32.sub (i32.load8_u (local.get $p)) (i32.const 48)) (i32.const 100))
        (i32.mul (i32.sub (i32.load8_u offset=1 (local.get $p)) (i32.const 48)) (i32.const 10)))
      (i32.sub (i32.load8_u offset=2 (local.get $p)) (i32.const 48))))
  ;; Sets the header the paused request's response gets.
  (func $set_extra (param $name i32) (param $name_len i32) (param $value i32) (param $value_len i32)
    (global.set $extra_name (local.get $name))
    (global.set $extra_name_len (local.get $name_len))
    (global.set $extra_value (local.get $value))
    (global.set $extra_value_len (local.get $value_len)))
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
              (i32.const 0) (i32.const 0) (i32.const 500) (i32.const 1032))
          (then (call $refuse (i32.const 403)) (return (i32.const 1))))
        (global.set $pending (local.get $ctx))
        (return (i32.const 1))))
    (if (call $starts (local.get $p) (local.get $n) (i32.const 576) (i32.const 3))
      (then
        (if (call $grpc_call
              (i32.add (local.get $p) (i32.const 3)) (i32.sub (local.get $n) (i32.const 3))
              (i32.const 592) (i32.const 11) (i32.const 608) (i32.const 5)
              (i32.const 0) (i32.const 0) (i32.const 616) (i32.const 4)
              (i32.const 500) (i32.const 1032))
          (then (call $refuse (i32.const 403)) (return (i32.const 1))))
        (global.set $pending (local.get $ctx))
        (return (i32.const 1))))
    (i32.const 0))
  (func (export "proxy_on_http_call_response") (param i32 i32 i32 i32 i32)
    (local $status i32)
    (drop (call $set_context (global.get $pending)))
    (if (call $get_header (i32.const 6) (i32.const 512) (i32.const 7)
          (i32.const 1024) (i32.const 1028))
      (then (call $refuse (i32.const 502)) (return)))
    (local.set $status (i32.load (i32.const 1024)))
    (if (i32.ne (i32.load8_u (local.get $status)) (i32.const 50))
      (then (call $refuse (call $digits3 (local.get $status))) (return)))
    (if (i32.eqz (call $get_header (i32.const 7) (i32.const 640) (i32.const 7)
                   (i32.const 1024) (i32.const 1028)))
      (then (call $set_extra (i32.const 640) (i32.const 7)
              (i32.load (i32.const 1024)) (i32.load (i32.const 1028)))))
    (drop (call $continue (i32.const 0))))
  (func (export "proxy_on_grpc_receive") (param i32 i32) (param $size i32)
    (drop (call $set_context (global.get $pending)))
    ;; An empty message is an empty value.
    (i32.store (i32.const 1028) (i32.const 0))
    (drop (call $get_buffer (i32.const 5) (i32.const 0) (local.get $size)
      (i32.const 1024) (i32.const 1028)))
    (call $set_extra (i32.const 624) (i32.const 6)
      (i32.load (i32.const 1024)) (i32.load (i32.const 1028)))
    (drop (call $continue (i32.const 0))))
  (func (export "proxy_on_grpc_close") (param i32 i32) (param $status i32)
    (drop (call $set_context (global.get $pending)))
    (i32.store (i32.const 1044) (i32.const 0))
    (i32.store (i32.const 1048) (i32.const 0))
    (drop (call $get_status (i32.const 1040) (i32.const 1044) (i32.const 1048)))
    (drop (call $local_reply (i32.add (i32.const 400) (local.get $status))
      (i32.const 0) (i32.const 0) (i32.load (i32.const 1044)) (i32.load (i32.const 1048))
      (i32.const 0) (i32.const 0) (i32.const -1))))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32)
    (i32.store8 (i32.const 560)
      (i32.add (i32.const 48) (i32.rem_u (global.get $count) (i32.const 10))))
    (drop (call $add_header (i32.const 2) (i32.const 544) (i32.const 7)
      (i32.const 560) (i32.const 1)))
    (if (global.get $extra_name)
      (then
        (drop (call $add_header (i32.const 2) (global.get $extra_name)
          (global.get $extra_name_len) (global.get $extra_value)
          (global.get $extra_value_len)))
        (global.set $extra_name (i32.const 0))))
    (i32.const 0))
)
