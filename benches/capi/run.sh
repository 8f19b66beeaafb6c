#!/usr/bin/env bash
# libgridos against the command line, same run: 1 GiB upload + download through the C API
# (copy_bench.c, gridos_copy) and through `gridos cp`, alternately, against one
# `gridos ftpd` on loopback, files on tmpfs. Prints each run, the medians, the spread and
# the ratio (C time ÷ CLI time). Usage: benches/capi/run.sh [RUNS] [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}
mib=${2:-1024}
cargo build --release -q -p gridos-middleware -p libgridos-ffi
rel=$PWD/target/release
work=$(mktemp -d /dev/shm/gridos-capi.XXXXXX)
trap 'kill $srv 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/lib" "$work/docroot"
# Started as root, the server drops to nobody inside its docroot.
chmod 0777 "$work/docroot"
ln -sf "$rel/libgridos.so" "$work/lib/libgridos.so.0.1"
ln -sf "$rel/libgridos.so" "$work/lib/libgridos.so"
cc -O2 -std=c99 -Wall -Wextra -Werror -pedantic -I libgridos-ffi/include benches/capi/copy_bench.c \
    -o "$work/copy_bench" -L "$work/lib" -lgridos -Wl,-rpath,"$work/lib"
head -c $((mib << 20)) /dev/urandom > "$work/original"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$rel/gridos" ftpd --docroot "$work/docroot" --listen 127.0.0.1:$port --anonymous --anonymous-write >/dev/null 2>&1 &
srv=$!
sleep 0.5
url=ftp://127.0.0.1:$port/bench.bin
sum=$(sha256sum < "$work/original")
c=(); cli=()
for i in $(seq "$runs"); do
    rm -f "$work/back" "$work/docroot/bench.bin"
    out=$("$work/copy_bench" "$work/original" "$url" "$work/back")
    [ "$(sha256sum < "$work/back")" = "$sum" ] || { echo "C API: bytes differ"; exit 1; }
    t=$(echo "$out" | awk '{s += $2} END {printf "%.3f", s}')
    c+=("$t")
    rm -f "$work/back" "$work/docroot/bench.bin"
    s=$(date +%s.%N)
    "$rel/gridos" cp -q "$work/original" "$url"
    "$rel/gridos" cp -q "$url" "$work/back"
    e=$(date +%s.%N)
    [ "$(sha256sum < "$work/back")" = "$sum" ] || { echo "gridos cp: bytes differ"; exit 1; }
    t2=$(python3 -c "print(f'{$e - $s:.3f}')")
    cli+=("$t2")
    echo "run $i: C API ${t} s, gridos cp ${t2} s (upload + download of $mib MiB)"
done
python3 - "${c[@]}" -- "${cli[@]}" <<'PY'
import statistics, sys
a = sys.argv[1:]
i = a.index("--")
c, cli = [float(x) for x in a[:i]], [float(x) for x in a[i + 1:]]
mc, ml = statistics.median(c), statistics.median(cli)
print(f"C API:     median {mc:.3f} s ({min(c):.3f}-{max(c):.3f})")
print(f"gridos cp: median {ml:.3f} s ({min(cli):.3f}-{max(cli):.3f})")
print(f"C API time / gridos cp time: {mc / ml:.3f}")
PY
