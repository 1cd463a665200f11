#!/usr/bin/env bash
# The load benchmark, in one command: builds the benchmark examples, starts a throw-away Redis and
# the benchmark server, then, interleaved over ROUNDS rounds, loads with wrk for SECONDS each:
#   plain    the MCP route with no guard (the limit)
#   memory   the same route behind the guard, MemoryStore
#   sqlite   ... SqliteStore (a file)
#   redis    ... RedisStore
#   refresh  POST /token, refresh grant with rotation followed (MemoryStore)
#   refresh_jwt  the same by a client that authenticates with private_key_jwt (RS256; a fresh
#            assertion per request, signed before the run, not timed)
#   sqlite_cached, redis_cached  the guarded route on SQLite and Redis behind a CachingStore
# recording requests/s, p50, p99 and the server's CPU time per request. The server is pinned to
# CPU $SERVER_CPU (default 0) and wrk to CPU $LOAD_CPU (default 1), so that two shared cores measure
# the server, not the scheduler. Then the stable measures:
# instructions per request under callgrind, and resident bytes per live token at 1,000,000 tokens.
# Writes target/bench/report.md and docs/benchmarks/throughput.png.
#
#   benches/load.sh                      # ROUNDS=3 SECONDS_EACH=5 CONNECTIONS=32 by default
#   ROUNDS=5 SECONDS_EACH=10 benches/load.sh
#
# Installs wrk, redis-server and valgrind (Debian) and matplotlib (pip) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds="${ROUNDS:-3}"
seconds="${SECONDS_EACH:-5}"
connections="${CONNECTIONS:-32}"
threads=2
server_cpu="${SERVER_CPU:-0}"
load_cpu="${LOAD_CPU:-1}"
# Assertions signed per round for refresh_jwt: more than the run can spend (an empty pool shows as
# non-2xx responses in the report).
assertions="${ASSERTIONS:-$((seconds * 50000))}"
calls="${CALLGRIND_CALLS:-1000}"
tokens_for_memory="${MEMORY_TOKENS:-1000000}"
out="target/bench"
rm -rf "$out" && mkdir -p "$out/raw" docs/benchmarks

need() { command -v "$1" >/dev/null 2>&1; }
if ! need wrk || ! need redis-server || ! need valgrind; then
    apt-get -qq update </dev/null || true
    DEBIAN_FRONTEND=noninteractive apt-get -qq install -y wrk redis-server valgrind </dev/null >/dev/null
fi
python3 -c "import matplotlib" 2>/dev/null || python3 -m pip install -q matplotlib

echo "==> building (release)"
cargo build -q --release --all-features --example bench_server --example bench_calls --example bench_memory \
    --example bench_assertions

free_port() {
    for port in $(seq "$1" "$2"); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
    done
    echo "no free port in $1-$2" >&2; exit 1
}

redis_port="$(free_port 6500 6600)"
redis_dir="$(mktemp -d)"
server_pid=""
cleanup() {
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
    redis-cli -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$redis_dir"
}
trap cleanup EXIT
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$redis_dir" \
    --daemonize yes --logfile "$redis_dir/log" >/dev/null
for _ in $(seq 50); do [[ "$(redis-cli -p "$redis_port" ping 2>/dev/null)" == PONG ]] && break; sleep 0.1; done

base_port="$(free_port 18100 18200)"
echo "==> starting the benchmark server on 127.0.0.1:$base_port-$((base_port + 9)), CPU $server_cpu"
taskset -c "$server_cpu" target/release/examples/bench_server "$base_port" "$out" "redis://127.0.0.1:$redis_port/" "$rounds" \
    >"$out/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 600); do grep -qs '^ready' "$out/server.log" && break; sleep 0.1; done
grep -q '^ready' "$out/server.log" || { cat "$out/server.log"; exit 1; }
# shellcheck disable=SC1091
source "$out/tokens.env"

# Server CPU time (user + system), in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server_pid/stat"; }

run() { # name port [wrk args...]
    local name="$1" port="$2"; shift 2
    local before after
    before="$(cpu_ticks)"
    # The URL goes before the options: script arguments follow a `--` at the end.
    taskset -c "$load_cpu" wrk -t "$threads" -c "$connections" -d "${seconds}s" --latency "http://127.0.0.1:$port$path" "$@" \
        >"$out/raw/$round-$name.txt"
    after="$(cpu_ticks)"
    echo "cpu_ticks=$((after - before))" >>"$out/raw/$round-$name.txt"
}

echo "==> load: $rounds rounds x 10 configurations x ${seconds}s, $connections connections, wrk on CPU $load_cpu"
for round in $(seq "$rounds"); do
    path=/mcp
    run plain "$base_port"
    run memory "$((base_port + 1))" -H "Authorization: Bearer $MEMORY_ACCESS"
    run sqlite "$((base_port + 2))" -H "Authorization: Bearer $SQLITE_ACCESS"
    run redis "$((base_port + 3))" -H "Authorization: Bearer $REDIS_ACCESS"
    run sqlite_cached "$((base_port + 6))" -H "Authorization: Bearer $SQLITE_CACHED_ACCESS"
    run redis_cached "$((base_port + 7))" -H "Authorization: Bearer $REDIS_CACHED_ACCESS"
    run demo "$((base_port + 8))" -s benches/wrk/tools_call.lua
    run demo_guarded "$((base_port + 9))" -s benches/wrk/tools_call.lua -H "Authorization: Bearer $MEMORY_ACCESS"
    path=/token
    run refresh "$((base_port + 4))" -s benches/wrk/refresh.lua -- "$MEMORY_CLIENT_ID" "$out/refresh_tokens_$round.txt" "$threads"
    # Signed now: each assertion lives a minute.
    target/release/examples/bench_assertions "$out/signing_key.pk8" "$SIGNING_CLIENT_ID" "$assertions" \
        "$out/assertions_$round.txt"
    run refresh_jwt "$((base_port + 5))" -s benches/wrk/refresh_signed.lua -- "$SIGNING_CLIENT_ID" \
        "$out/refresh_tokens_signed_$round.txt" "$out/assertions_$round.txt" "$threads"
    echo "    round $round done"
done
kill "$server_pid"; server_pid=""

echo "==> callgrind: instructions per request ($calls and $((2 * calls)) calls per mode)"
for mode in plain guard full refresh; do
    for n in "$calls" "$((2 * calls))"; do
        valgrind --tool=callgrind --callgrind-out-file="$out/raw/callgrind-$mode-$n.out" \
            target/release/examples/bench_calls "$mode" "$n" >/dev/null 2>&1
    done
done

echo "==> memory: $tokens_for_memory live access tokens"
target/release/examples/bench_memory access "$tokens_for_memory" >"$out/raw/memory-access.txt"
target/release/examples/bench_memory grant "$((tokens_for_memory / 4))" >"$out/raw/memory-grant.txt"

python3 benches/report.py "$out" "$rounds" "$calls" "$connections" "$seconds" "$server_cpu" "$load_cpu"
