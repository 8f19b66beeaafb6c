#!/usr/bin/env bash
# Interleaved rounds on the emulated WAN (100 ms RTT, or DELAY one way; 1 Gbit/s, MTU 9000):
# OLD and NEW gridos cp (512 MiB download, no flags), then iperf3 -P 4 -t 10, in turn.
# Needs root, iperf3 and release builds of gridos and wanem: OLD=/path/to/gridos benches/wan_rounds.sh
# OLD_ARGS / NEW_ARGS: more cp options for one of them (e.g. NEW_ARGS="--host-memory off").
set -u
ROUNDS=${ROUNDS:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
OLD=${OLD:?OLD: the gridos binary to compare against}; NEW=${NEW:-$here/target/release/gridos}
WANEM=$here/target/release/wanem
root=/tmp/wanroot; mkdir -p $root
[ -f $root/big ] || head -c 536870912 /dev/urandom > $root/big
want=$(sha256sum < $root/big | cut -d' ' -f1)
$WANEM --delay ${DELAY:-50ms} --rate 1gbit --mtu 9000 ${LOSS:+--loss $LOSS} > /tmp/wanem.out 2>&1 &
wp=$!
for i in $(seq 50); do grep -q gwan-s /tmp/wanem.out && break; sleep 0.2; done
S=$(grep -o 'gwan-s-[0-9]*-[0-9]*' /tmp/wanem.out | head -1); C=${S/gwan-s/gwan-c}
echo "namespaces $C $S"
ip netns exec $S $NEW ftpd --listen 198.18.0.2:2121 --anonymous --docroot $root --max-clients 100 > /tmp/wan-ftpd.log 2>&1 &
fp=$!
sleep 1
run_cp() { # bin label [cp options]
  rm -f /tmp/wan.out
  local t0=$(date +%s.%N)
  ip netns exec $C $1 cp $3 ftp://198.18.0.2:2121/big /tmp/wan.out > /dev/null 2>/tmp/wan-cp.err || { echo "$2 FAILED"; cat /tmp/wan-cp.err; }
  local t1=$(date +%s.%N)
  local h=$(sha256sum < /tmp/wan.out | cut -d' ' -f1)
  [ "$h" = "$want" ] || echo "$2 WRONG BYTES"
  python3 -c "print('$2 %.3f s %.1f MB/s' % ($t1-$t0, 536870912/($t1-$t0)/1e6))"
}
for r in $(seq $ROUNDS); do
  echo "round $r"
  run_cp $OLD old "${OLD_ARGS:-}"
  run_cp $NEW new "${NEW_ARGS:-}"
  # One test per iperf3 server (-1), started afresh each round.
  ip netns exec $S iperf3 -s -D -1 >/dev/null 2>&1; sleep 0.5
  ip netns exec $C iperf3 -c 198.18.0.2 -P 4 -t 10 -J > /tmp/iperf.json 2>&1
  python3 -c "import json;d=json.load(open('/tmp/iperf.json'));print('iperf3-P4 %.1f MB/s' % (d['end']['sum_received']['bits_per_second']/8e6))"
done
kill $fp; kill $wp; wait 2>/dev/null
