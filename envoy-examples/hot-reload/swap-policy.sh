#!/usr/bin/env bash
# Swaps the policy of a running Envoy through file-based ECDS (see README.md here):
#   envoy-examples/hot-reload/swap-policy.sh POLICY.json
#
# 1. Checks the policy the way the filter itself will (`stakeguard check`: the harness
#    loads the same .wasm and calls its on_configure), so a policy Envoy would refuse never
#    reaches the watched directory.
# 2. Writes the ECDS resource (a DiscoveryResponse holding the stakeguard Wasm filter with
#    the policy as its configuration) to a temporary file in the watched directory, then
#    `mv`s it over the watched file. rename(2) within one directory is atomic, so Envoy
#    never reads a half-written file, and the move is the event its directory watch
#    reacts to (a write in place would not be seen).
#
# Environment (defaults are relative to the repository root, where Envoy runs):
#   ECDS_DIR        watched directory           (envoy-examples/hot-reload/ecds)
#   STAKEGUARD_WASM the module named in the resource
#                   (target/wasm32-wasip1/release/stakeguard_filter.wasm)
#   STAKEGUARD_CLI  the harness CLI             (target/harness/stakeguard, `make cli`)
set -euo pipefail

if [ "$#" -ne 1 ]; then
    echo "usage: $0 POLICY.json" >&2
    exit 2
fi
policy="$1"
ecds_dir="${ECDS_DIR:-envoy-examples/hot-reload/ecds}"
module="${STAKEGUARD_WASM:-target/wasm32-wasip1/release/stakeguard_filter.wasm}"
cli="${STAKEGUARD_CLI:-target/harness/stakeguard}"
# The filter's name: the ECDS resource name the listener asks for, and the middle of the
# stat prefix extension_config_discovery.http_filter.<name>.
name="${STAKEGUARD_FILTER_NAME:-stakeguard}"

if [ ! -r "$policy" ]; then
    echo "swap-policy: cannot read policy $policy" >&2
    exit 2
fi
if [ ! -x "$cli" ]; then
    echo "swap-policy: the stakeguard CLI is missing at $cli; build it with \`make cli\`" \
         "(or set STAKEGUARD_CLI). Refusing to swap an unchecked policy." >&2
    exit 3
fi
if [ ! -f "$module" ]; then
    echo "swap-policy: module $module not found; build it with \`make wasm\`" >&2
    exit 3
fi

# The check prints the filter's own validation errors (with JSON paths) when it refuses,
# and with --explain the failure policy the policy needs if the module traps (fail closed
# when any API's on_error is fail_closed).
if ! check_output="$("$cli" check --explain --module "$module" "$policy" 2>&1)"; then
    echo "$check_output" >&2
    echo "swap-policy: $policy was refused by the filter; nothing swapped" >&2
    exit 1
fi
failure_policy="$(printf '%s\n' "$check_output" \
    | sed -n 's/.*`failure_policy: \(FAIL_[A-Z]*\)`.*/\1/p' | head -n 1)"
failure_policy="${failure_policy:-FAIL_CLOSED}"

mkdir -p "$ecds_dir"
target="$ecds_dir/$name.json"
tmp="$(mktemp "$ecds_dir/.$name.json.XXXXXX")"
trap 'rm -f "$tmp"' EXIT

# version_info carries the revision, so /config_dump shows which policy is in use.
jq -n --rawfile policy "$policy" --arg wasm "$module" --arg name "$name" \
   --arg failure_policy "$failure_policy" '
  ($policy | fromjson | .revision // "unknown") as $revision
  | {
      version_info: $revision,
      resources: [{
        "@type": "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig",
        name: $name,
        typed_config: {
          "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
          config: {
            name: $name,
            root_id: "stakeguard",
            # What requests meet if the module traps: the on_error of the policy decides.
            failure_policy: $failure_policy,
            # The same vm_config on every swap: Envoy keeps the VMs and only configures
            # a new root context with the new policy.
            vm_config: {
              vm_id: "stakeguard",
              runtime: "envoy.wasm.runtime.v8",
              code: { local: { filename: $wasm } }
            },
            configuration: {
              "@type": "type.googleapis.com/google.protobuf.StringValue",
              value: $policy
            }
          }
        }
      }]
    }' > "$tmp"
# mktemp makes the file private; Envoy may run as another user.
chmod 0644 "$tmp"
mv -f "$tmp" "$target"
trap - EXIT
echo "swap-policy: $policy (revision $(jq -r '.revision // "unknown"' "$policy")) written to $target"
