#!/usr/bin/env bash
# Installs the peers the side-by-side harness compares gridos with (Debian packages; run as
# root). vsftpd and proftpd conflict as packages, so both are extracted side by side under
# /opt/gridos-peers (the harness's default; GRIDOS_PEERS_DIR overrides) instead of installed.
set -euo pipefail
peers=${GRIDOS_PEERS_DIR:-/opt/gridos-peers}
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    globus-gridftp-server-progs globus-gass-copy-progs curl lftp iperf3 iproute2 \
    libhiredis0.14 libmemcached11 libmemcachedutil2 libpcre2-posix3 libwrap0 >/dev/null
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download -qq vsftpd proftpd-core 2>/dev/null)
mkdir -p "$peers/vsftpd" "$peers/proftpd"
dpkg -x "$tmp"/vsftpd_*.deb "$peers/vsftpd"
dpkg -x "$tmp"/proftpd-core_*.deb "$peers/proftpd"
"$peers/proftpd/usr/sbin/proftpd" -v
echo "peers ready under $peers"
