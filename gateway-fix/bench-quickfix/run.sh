#!/bin/sh
# QuickFIX C++ codec baseline. Needs: apt-get install libquickfix-dev
# QuickFIX 1.15 headers use dynamic exception specifications: C++14 at most.
# Usage: gateway-fix/bench-quickfix/run.sh [FIX44.xml] [iterations]
set -e
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -f /usr/include/quickfix/Message.h ]; then
  echo "QuickFIX headers missing: apt-get install libquickfix-dev" >&2
  exit 2
fi
out=${TMPDIR:-/tmp}/castle-bench-quickfix
g++ -O2 -std=gnu++14 -Wno-deprecated -DNDEBUG -o "$out" "$here/bench.cpp" $(pkg-config --cflags --libs quickfix 2>/dev/null || echo -lquickfix) -lpthread
exec "$out" "$@"
