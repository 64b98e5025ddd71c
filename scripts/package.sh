#!/usr/bin/env bash
# Builds the Debian package: target/debian/trigpoll_<version>-1_<arch>.deb (README, "Install").
#
# Builds the binary (release profile, or the one named by --profile), generates from it the
# manual pages and the shell completions, and the connector examples of /etc/trigpoll/connectors
# from connectors/*.toml, then packages them with cargo-deb ([package.metadata.deb] in
# Cargo.toml), which it installs first when it is missing. Further arguments go to cargo-deb
# (e.g. --fast).
set -euo pipefail
cd "$(dirname "$0")/.."

# The cargo-deb this script was written against; another version may package differently.
CARGO_DEB_VERSION=3.8.0

profile=release
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile=$2; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

if [ "$(cargo deb --version 2>/dev/null)" != "cargo-deb $CARGO_DEB_VERSION" ]; then
  echo "package: installing cargo-deb $CARGO_DEB_VERSION" >&2
  cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi

cargo build --locked --profile "$profile" --bin trigpoll
# cargo-deb reads every target/release/... asset from the profile's own folder.
case "$profile" in dev) dir=debug ;; *) dir=$profile ;; esac
out="${CARGO_TARGET_DIR:-target}/$dir"
stage="$out/package"
rm -rf "$stage"
mkdir -p "$stage/completions" "$stage/connectors"
"$out/trigpoll" man --dir "$stage/man"
# Debian compresses manual pages (cargo-deb does only for files it does not take as built).
gzip -9n "$stage"/man/*.1
"$out/trigpoll" completions bash > "$stage/completions/trigpoll.bash"
"$out/trigpoll" completions zsh > "$stage/completions/_trigpoll"
"$out/trigpoll" completions fish > "$stage/completions/trigpoll.fish"

# The connector examples, not enabled (only *.toml files are connectors). The file connector's
# output goes where the service may write.
for example in connectors/*.toml; do
  cp "$example" "$stage/connectors/$(basename "$example").example"
done
file="$stage/connectors/file.toml.example"
sed -i -e 's|^path = "../trigpoll-events.ndjson"$|path = "/var/lib/trigpoll/trigpoll-events.ndjson"|' \
  -e 's|^# so this one is trigpoll-events.ndjson beside the main configuration.$|# the trigpoll service may write only under /var/lib/trigpoll.|' "$file"
if [ "$(grep -c -e '^path = "/var/lib/trigpoll/' -e '^# the trigpoll service may write' "$file")" != 2 ]; then
  echo "package: connectors/file.toml changed; update the lines this script rewrites" >&2
  exit 1
fi

cargo deb --no-build --profile "$profile" ${args[@]+"${args[@]}"}
