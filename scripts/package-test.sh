#!/usr/bin/env bash
# The Debian package, installed on this machine for real: builds it with scripts/package.sh,
# installs it with dpkg (twice, as an upgrade in place would), checks its files, conffiles,
# user, permissions and systemd units (systemd-analyze verify), runs `trigpoll --version` and
# `trigpoll check` on the installed configuration, then removes and purges it and checks that
# nothing is left: no file, no /etc/trigpoll, no user or group, no statoverride.
#
# The package is built from the dev profile's binary, which the test suite has just built: what
# is under test is the packaging, and a release build would add minutes to every run. Needs
# root (dpkg); refuses to run where a trigpoll package, user or /etc/trigpoll exists already.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/servers.sh

fail() {
  log "package test: $*"
  exit 1
}

if [ "$(id -u)" != 0 ]; then
  [ "${CI:-}" = true ] && fail "needs root to install the package"
  log "package test skipped: needs root to install the package"
  exit 0
fi
status=$(dpkg-query -W -f '${Status}' trigpoll 2>/dev/null || true)
if [ -n "$status" ] && [[ "$status" != *not-installed ]]; then
  fail "a trigpoll package is on this machine already ($status); not touching it"
fi
if getent passwd trigpoll >/dev/null || getent group trigpoll >/dev/null || [ -e /etc/trigpoll ]; then
  fail "a trigpoll user, group or /etc/trigpoll exists already; not touching it"
fi
command -v systemd-analyze >/dev/null || apt_install systemd
command -v adduser >/dev/null || apt_install adduser

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
rm -f target/debian/trigpoll_*.deb
bash scripts/package.sh --profile dev --fast --quiet
deb=$(ls target/debian/trigpoll_"$version"-*.deb)

# Whatever fails below, the machine is left as it was found.
trap 'dpkg --purge trigpoll >/dev/null 2>&1 || true' EXIT

dpkg -i "$deb" >/dev/null
# A second install runs the maintainer scripts over what the first made, as an upgrade does.
dpkg -i "$deb" >/dev/null
installed=$(dpkg -L trigpoll)

for f in /usr/bin/trigpoll \
  /usr/share/man/man1/trigpoll.1.gz /usr/share/man/man1/trigpoll-poll.1.gz \
  /usr/share/bash-completion/completions/trigpoll /usr/share/zsh/vendor-completions/_trigpoll \
  /usr/share/fish/vendor_completions.d/trigpoll.fish \
  /etc/trigpoll/trigpoll.toml /etc/trigpoll/env /etc/trigpoll/connectors/http.toml.example \
  /usr/lib/systemd/system/trigpoll.service /usr/lib/systemd/system/trigpoll@.service \
  /usr/share/doc/trigpoll/copyright /usr/share/doc/trigpoll/examples/trigpoll.cron \
  /usr/share/doc/trigpoll/examples/grafana-dashboard.json /usr/share/doc/trigpoll/examples/alerts.yml \
  /usr/share/doc/trigpoll/examples/config.example.toml; do
  [ -f "$f" ] || fail "the package did not install $f"
done
zcat /usr/share/man/man1/trigpoll-poll.1.gz | grep -q '^\.TH trigpoll-poll 1' \
  || fail "trigpoll-poll.1.gz is not the poll manual page"
bash -c '. /usr/share/bash-completion/completions/trigpoll && complete -p trigpoll' >/dev/null \
  || fail "the bash completion does not complete trigpoll"
conffiles=$(dpkg-query -W -f '${Conffiles}' trigpoll)
for f in /etc/trigpoll/trigpoll.toml /etc/trigpoll/env /etc/trigpoll/connectors/file.toml.example; do
  grep -q " $f " <<<"$conffiles" || fail "$f is not a conffile"
done

IFS=: read -r _ _ uid _ _ home shell < <(getent passwd trigpoll) || fail "no trigpoll user"
[ "$uid" -lt 1000 ] && [ "$home" = /var/lib/trigpoll ] && [ "$shell" = /usr/sbin/nologin ] \
  || fail "the trigpoll user is not a system user without login: uid $uid, $home, $shell"
[ "$(stat -c '%U:%G %a' /var/lib/trigpoll)" = "trigpoll:trigpoll 750" ] \
  || fail "/var/lib/trigpoll is $(stat -c '%U:%G %a' /var/lib/trigpoll)"
[ "$(stat -c '%U:%G %a' /etc/trigpoll)" = "root:trigpoll 750" ] \
  || fail "/etc/trigpoll is $(stat -c '%U:%G %a' /etc/trigpoll)"
runuser -u nobody -- cat /etc/trigpoll/env >/dev/null 2>&1 \
  && fail "other users can read /etc/trigpoll/env"

# Warnings count as failures: systemd-analyze exits 0 on unknown or misspelt settings.
analysis=$(systemd-analyze verify /usr/lib/systemd/system/trigpoll.service \
  /usr/lib/systemd/system/trigpoll@.service 2>&1) || fail "systemd-analyze verify: $analysis"
[ -z "$analysis" ] || fail "systemd-analyze verify: $analysis"
# The hardening: systemd's exposure score (0 to 10, shown as "1.6 OK") stays low.
for unit in trigpoll.service trigpoll@.service; do
  systemd-analyze security --offline=true --threshold=20 "/usr/lib/systemd/system/$unit" >/dev/null 2>&1 \
    || fail "$unit: $(systemd-analyze security --offline=true "/usr/lib/systemd/system/$unit" 2>&1 | tail -n 1)"
done

[ "$(trigpoll --version)" = "trigpoll $version" ] || fail "trigpoll --version: $(trigpoll --version)"
out=$(runuser -u trigpoll -- trigpoll --config /etc/trigpoll/trigpoll.toml check) \
  || fail "trigpoll check on the installed configuration: $out"
grep -q '^configuration  ok: /etc/trigpoll/trigpoll.toml (0 objects, 0 connectors)$' <<<"$out" \
  || fail "trigpoll check: $out"
# The connector examples are valid connectors once renamed.
examples=$(mktemp -d)
cp -r /etc/trigpoll/. "$examples"
for f in "$examples"/connectors/*.toml.example; do mv "$f" "${f%.example}"; done
out=$(trigpoll --config "$examples/trigpoll.toml" check) || fail "the connector examples: $out"
grep -q "(0 objects, 6 connectors)" <<<"$out" || fail "the connector examples: $out"
rm -rf "$examples"

dpkg --remove trigpoll >/dev/null
[ -f /etc/trigpoll/trigpoll.toml ] || fail "remove (not purge) took the configuration"
getent passwd trigpoll >/dev/null || fail "remove (not purge) took the trigpoll user"
dpkg --purge trigpoll >/dev/null
trap - EXIT

left=""
while read -r path; do
  if [ -e "$path" ] && ! [ -d "$path" ]; then left+=" $path"; fi
done <<<"$installed"
for path in /etc/trigpoll /var/lib/trigpoll $(find /var/lib/systemd -name '*trigpoll*' 2>/dev/null); do
  if [ -e "$path" ]; then left+=" $path"; fi
done
[ -z "$left" ] || fail "purge left$left"
getent passwd trigpoll >/dev/null && fail "purge left the trigpoll user"
getent group trigpoll >/dev/null && fail "purge left the trigpoll group"
[ -z "$(dpkg-statoverride --list /etc/trigpoll)" ] || fail "purge left the statoverride of /etc/trigpoll"
log "package test: $(basename "$deb") installs, checks, verifies and purges cleanly"
