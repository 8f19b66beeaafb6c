#!/bin/bash
# Uploads 96 MiB over wanem (20 ms RTT, or DELAY one way; 1 Gbit/s, MTU 9000) with --tcp-bs 64K and
# the client's buffers capped at 256 KiB (io.toml): -p 1 (fixed) against no -p (the upload opens more
# streams while it runs), ROUNDS interleaved rounds, SHA-256 checked. Needs root and release builds.
set -u
here=$(cd "$(dirname "$0")/.." && pwd); G=${GRIDOS:-$here/target/release/gridos}
root=/tmp/growroot; rm -rf $root; mkdir -p $root/d; chmod 777 $root/d
head -c 100663296 /dev/urandom > $root/up.bin
printf '[io]\nmax_buffer = 262144\nmax_total_buffer = 4194304\nmax_streams = 12\nmonitor_interval_ms = 100\n' > $root/io.toml
$here/target/release/wanem --delay ${DELAY:-10ms} --rate 1gbit --mtu 9000 > /tmp/wanem2.out 2>&1 &
wp=$!
for i in $(seq 50); do grep -q gwan-s /tmp/wanem2.out && break; sleep 0.2; done
S=$(grep -o 'gwan-s-[0-9]*-[0-9]*' /tmp/wanem2.out | head -1); C=${S/gwan-s/gwan-c}
ip netns exec $S $G ftpd --listen 198.18.0.2:2122 --anonymous --anonymous-write --docroot $root/d > /tmp/grow-ftpd.log 2>&1 &
fp=$!; sleep 1
want=$(sha256sum < $root/up.bin | cut -d' ' -f1)
one() { # label args...
  local l=$1; shift; rm -f $root/d/up.bin
  local t0=$(date +%s.%N)
  GRIDOS_IO_CONFIG=$root/io.toml ip netns exec $C $G -v cp --host-memory off "$@" $root/up.bin gridftp://198.18.0.2:2122/up.bin 2>/tmp/grow-cp.err >/dev/null || { echo "$l FAILED"; cat /tmp/grow-cp.err; }
  local t1=$(date +%s.%N)
  [ "$(sha256sum < $root/d/up.bin | cut -d' ' -f1)" = "$want" ] || echo "$l WRONG BYTES"
  python3 -c "print('$l %.3f s %.1f MB/s' % ($t1-$t0, 100663296/($t1-$t0)/1e6))" | tr '\n' ' '; grep -o "stream[s]*[, 0-9a-z]*by the end\|MODE E, [0-9]* stream[s]*)" /tmp/grow-cp.err | tail -1
}
for r in $(seq ${ROUNDS:-3}); do one fixed -p 1 --tcp-bs 64K; one grows --tcp-bs 64K; done
kill $fp $wp; wait 2>/dev/null
