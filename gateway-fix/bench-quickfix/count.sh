#!/bin/sh
# Instructions per parse+validate, QuickFIX vs Castle, counted by callgrind
# (does not depend on the machine's load). Needs: libquickfix-dev, valgrind,
# and a release build of the codec_cost example:
#   cargo build --release -p castle-gateway-fix --example codec_cost
# Usage: gateway-fix/bench-quickfix/count.sh [FIX44.xml]
set -e
here=$(cd "$(dirname "$0")" && pwd)
dict=${1:-${CASTLE_FIX_SPEC_DIR:-/work/shared/reference/fix}/FIX44.xml}
target=${CARGO_TARGET_DIR:-$here/../../target}
out=${TMPDIR:-/tmp}/castle-count-quickfix
g++ -O2 -std=gnu++14 -Wno-deprecated -DNDEBUG -o "$out" "$here/count.cpp" $(pkg-config --cflags --libs quickfix 2>/dev/null || echo -lquickfix)
ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$@" 2>&1 | sed -n 's/.*I *refs: *//p' | tr -d ,; }
n=2000
for m in nos er; do
  q0=$(ir "$out" "$dict" $m 0); q1=$(ir "$out" "$dict" $m $n)
  c0=$(ir "$target/release/examples/codec_cost" 0 $m); c1=$(ir "$target/release/examples/codec_cost" $n $m)
  q=$(( (q1 - q0) / n )); c=$(( (c1 - c0) / n ))
  echo "$m: QuickFIX $q instructions/message, Castle $c, ratio $(awk "BEGIN { printf \"%.2f\", $q / $c }")x"
done
