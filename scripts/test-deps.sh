#!/usr/bin/env bash
# Installs the real peers the tests run against (Debian packages), when they are missing, and
# stops the system services those packages start: the tests start their own instances on free
# loopback ports. Run by `pnpm test`; needs root (or sudo) only when something is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]; }
need=()
for pair in redis-server:redis-server rbldnsd:rbldnsd nsd:nsd swaks:swaks postfix:postfix \
  postgrey:postgrey p0f:p0f chromium:chromium; do
  have "${pair%%:*}" || need+=("${pair##*:}")
done
# chromium: the status page's browser test drives Debian's chromium headless (playwright-core,
# which never downloads a browser of its own).
# swaks --tls needs Perl's TLS modules (Recommends of swaks, not pulled in without recommends).
perl -MNet::SSLeay -MIO::Socket::SSL -e 1 >/dev/null 2>&1 || need+=(libnet-ssleay-perl libio-socket-ssl-perl)
have openssl || need+=(openssl)
if [ "${#need[@]}" -gt 0 ]; then
  echo "test-deps: installing ${need[*]}" >&2
  echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections || true
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  for svc in redis-server nsd postgrey postfix rbldnsd; do
    $SUDO service "$svc" stop >/dev/null 2>&1 || true
  done
fi
