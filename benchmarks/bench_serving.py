"""Serving latency under republishing: direct SQL lookups and HTTP through ``recsys api``.

    .venv/bin/python benchmarks/bench_serving.py [--users 500000] [--recs 20] [--republish 3]

1. Builds a fake build database (``pub_*`` tables: ``--users`` warm users x ``--recs`` recs with
   38-digit decimal ids, cold users with profiles only, items, co-purchases, fallbacks) and
   publishes it once (timed); starts ``python -m flows.cli api`` in its own process.
2. Quiet phases (``--quiet-seconds`` each, no publisher): (a) direct SQL through ``ml.serving``
   with read-only connections in ``--sql-threads`` threads (plain query on
   ``recommendations``, ``recommend`` for warm and unknown users, ``related_items`` with a
   user for items with bought-together rows and, apart, for new items); (b) HTTP with
   ``--http-concurrency`` keep-alive httpx clients in threads; (c) (a) and (b) at once, the
   control for 3c (the SQL thread then shares this process's GIL with the HTTP clients).
3. Republishing phases, each while another *process* (niced, 1 DuckDB thread) publishes
   ``--republish`` times, lasting until that process is done: (a) SQL alone, (b) HTTP alone
   (the goals), (c) both at once (a stress number: on 2 cores its tail is CPU contention).

Counts failed and empty answers per phase and query (all must be 0), prints p50/p95/p99 and
throughput, records the load average at the end of each phase, and writes JSON to
``benchmarks/results/serving-<timestamp>.json``. Not a test: takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ml import serving  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
AS_OF = datetime(2023, 8, 13, 23, 59, 59)


def make_build(path: Path, users: int, recs: int, cold_users: int, items: int, categories: int) -> None:
    """Fake ``pub_*`` tables, generated in SQL (ids: 38-digit decimals like the real hashes)."""
    t0 = time.perf_counter()
    con = duckdb.connect(str(path))
    con.execute("set preserve_insertion_order = false")
    uid = (
        "cast(1 + hash(i, 'u') % 9 as varchar) || lpad(cast(hash(i, 'v') % 10000000000000000000 as varchar), 19, '0')"
        " || lpad(cast(hash(i, 'w') % 1000000000000000000 as varchar), 18, '0')"
    )
    iid = (
        "cast(1 + hash({x}, 'i') % 9 as varchar) || lpad(cast(hash({x}, 'j') % 10000000000000000000 as varchar), 19, '0')"
        " || lpad(cast(hash({x}, 'k') % 1000000000000000000 as varchar), 18, '0')"
    )
    con.execute(f"create table item_ids as select i as n, {iid.format(x='i')} as item_id from range({items}) r(i)")
    con.execute(f"""create table pub_items as select item_id,
        cast(1000000 + n % {categories} as varchar) as category_id,
        cast(100 + hash(n, 'p') % 20000 as double) as price_rub,
        1000000.0 / (n + 10) as popularity, 'bench' as model_version from item_ids""")
    gen = "TIMESTAMP '2023-08-14 03:00:00'"
    con.execute(f"""create table pub_recommendations as
        select g.user_id, it.item_id, g.rank, 1.0 / g.rank as score,
               'personal' as reason, 'bench' as model_version, {gen} as generated_at
        from (select {uid} as user_id, cast(r as integer) as rank,
                     (hash(i) % {items // recs}) * {recs} + r - 1 as item_n
              from range({users}) u(i) cross join range(1, {recs} + 1) t(r)) g
        join item_ids it on it.n = g.item_n""")
    # (each user gets a block of consecutive item numbers, so a list never repeats an item)
    con.execute(f"""create table pub_user_profiles as
        select {uid} as user_id, (['Site', 'Android', 'iOS'])[1 + i % 3] as platform,
               cast(floor(log2(500 + i % 5000)) as integer) as price_tier,
               cast(1000000 + i % {categories} as varchar) as top_category_id, 'bench' as model_version
        from range({users + cold_users}) u(i)""")
    con.execute(f"""create table pub_fallback_recommendations as
        select p.platform, it.item_id, cast(it.n + 1 as integer) as rank, 1.0 / (it.n + 1) as score,
               'popular' as reason, 'bench' as model_version, {gen} as generated_at
        from (values ('Site'), ('Android'), ('iOS'), ('all')) p(platform), item_ids it where it.n < 100""")
    n_sim = items // 5
    con.execute(f"""create table pub_similar_items as
        select g.item_id, b.item_id as similar_item_id, g.rank, 1.0 / g.rank as score,
               cast(20 - g.rank as integer) as support_users, 0.1 / g.rank as confidence, 3.0 as lift,
               'bench' as model_version
        from (select a.item_id, cast(r as integer) as rank, {n_sim} + (a.n * 10 + r) % {items - n_sim} as other_n
              from item_ids a cross join range(1, 11) t(r) where a.n < {n_sim}) g
        join item_ids b on b.n = g.other_n""")
    samples = {
        "warm": [r[0] for r in con.execute(f"select {uid} from range({users}) u(i) using SAMPLE 5000 ROWS").fetchall()],
        "cold": [
            r[0]
            for r in con.execute(
                f"select {uid} from range({users}, {users + cold_users}) u(i) USING SAMPLE 2000 ROWS"
            ).fetchall()
        ],
        "items_pairs": [
            r[0]
            for r in con.execute(f"select item_id from item_ids where n < {n_sim} USING SAMPLE 2000 ROWS").fetchall()
        ],
        "items_new": [
            r[0]
            for r in con.execute(f"select item_id from item_ids where n >= {n_sim} USING SAMPLE 2000 ROWS").fetchall()
        ],
    }
    con.execute("drop table item_ids")
    con.close()
    print(f"build db: {users:,} users x {recs} recs, {items:,} items in {time.perf_counter() - t0:.1f} s", flush=True)
    return samples


REPUBLISHER = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from datetime import datetime
from ml.serving import publish
os.nice(10)  # a batch job beside a latency-sensitive reader: give the reader the CPU first
for i in range(int(sys.argv[4])):
    r = publish(sys.argv[2], sys.argv[3], model_version="bench", as_of=datetime(2023, 8, 13),
                threads=1)
    print(f"published {i} in {r.seconds:.1f} s", flush=True)
    time.sleep(0.5)
"""


def start_republisher(build: Path, serving_db: Path, times: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", REPUBLISHER, str(ROOT), str(build), str(serving_db), str(times)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def summarise(name: str, lat_ms: list[float], failures: int, empties: int, seconds: float) -> dict:
    lat = sorted(lat_ms)
    pick = lambda q: round(lat[min(len(lat) - 1, int(q * len(lat)))], 3) if lat else None  # noqa: E731
    out = {
        "name": name,
        "requests": len(lat),
        "failures": failures,
        "empty": empties,
        "p50_ms": pick(0.50),
        "p95_ms": pick(0.95),
        "p99_ms": pick(0.99),
        "max_ms": round(lat[-1], 3) if lat else None,
        "throughput_rps": round(len(lat) / seconds, 1) if seconds else None,
    }
    print(
        f"  {name:<28} n={out['requests']:>7}  p50={out['p50_ms']:>7} ms  p95={out['p95_ms']:>7} ms  "
        f"p99={out['p99_ms']:>7} ms  max={out['max_ms']:>8} ms  {out['throughput_rps']:>8} req/s  "
        f"failed={failures} empty={empties}",
        flush=True,
    )
    return out


def run_workers(
    workers: list[tuple], *, proc: subprocess.Popen | None = None, seconds: float = 0.0, max_requests: int = 200_000
) -> tuple[dict, float, list[str]]:
    """Run each ``(work, threads)`` in its threads until ``proc`` exits, or for ``seconds``
    when there is no ``proc`` (or until ``max_requests``). ``work(rng, record)`` does one request."""
    stats: dict[str, list] = {}
    lock = threading.Lock()
    stop = threading.Event()
    count = [0]

    def record(kind: str, ms: float, ok: bool, empty: bool) -> None:
        with lock:
            s = stats.setdefault(kind, [[], 0, 0])
            s[0].append(ms)
            s[1] += not ok
            s[2] += empty
            count[0] += 1
            if count[0] >= max_requests:
                stop.set()

    def loop(work, seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            work(rng, record)

    t0 = time.perf_counter()
    pool = [
        threading.Thread(target=loop, args=(work, 100 * j + i), daemon=True)
        for j, (work, threads) in enumerate(workers)
        for i in range(threads)
    ]
    for t in pool:
        t.start()
    log = []
    if proc is not None:
        for line in proc.stdout:
            log.append(line.strip())
            print("   republisher:", line.strip(), flush=True)
        proc.wait()
        if proc.returncode != 0:
            stop.set()
            raise SystemExit("republisher failed: " + proc.stderr.read())
    else:
        stop.wait(seconds)
    stop.set()
    for t in pool:
        t.join()
    return stats, time.perf_counter() - t0, log


def report(stats: dict, seconds: float, label: str) -> dict:
    out = {
        "seconds": round(seconds, 1),
        "load_avg_end": os.getloadavg(),
        "by_query": [summarise(k, *v, seconds) for k, v in sorted(stats.items())],
    }
    for prefix in ("sql", "http"):
        mine = {k: v for k, v in stats.items() if k.startswith("http") == (prefix == "http")}
        if mine:
            out[prefix] = summarise(
                f"{label}: {prefix} (all)",
                [x for v in mine.values() for x in v[0]],
                sum(v[1] for v in mine.values()),
                sum(v[2] for v in mine.values()),
                seconds,
            )
    return out


def sql_phase(serving_db: Path, samples: dict, threads: int):
    reader = serving.ServingReader(serving_db, check_interval=0.05)
    plain = "select item_id, rank, score from recommendations where user_id = ? order by rank"

    def work(rng, record):
        kind = rng.choices(
            ["plain_warm", "recommend_warm", "recommend_unknown", "related_items", "related_items_new"],
            weights=[3, 4, 1, 1.4, 0.6],
        )[0]
        t = time.perf_counter()
        ok, rows = True, []
        try:
            cur = reader.cursor()
            try:
                if kind == "plain_warm":
                    rows = cur.execute(plain, [rng.choice(samples["warm"])]).fetchall()
                elif kind == "recommend_warm":
                    rows = serving.recommendations_for_user(cur, rng.choice(samples["warm"]), n=20)
                elif kind == "recommend_unknown":
                    rows = serving.recommendations_for_user(cur, rng.choice(samples["cold"]), n=20)
                else:
                    item = rng.choice(samples["items_pairs" if kind == "related_items" else "items_new"])
                    rows = serving.similar_items(cur, item, user_id=rng.choice(samples["warm"]), n=20)
            finally:
                cur.close()
        except Exception as exc:  # counted, not raised
            ok = False
            print("   sql error:", repr(exc)[:200], flush=True)
        record(kind, (time.perf_counter() - t) * 1000, ok, ok and len(rows) == 0)

    return work, reader


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_phase(base: str, samples: dict):
    import httpx

    local = threading.local()

    def work(rng, record):
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=base, timeout=10)
        kind = rng.choices(["http_recommendations", "http_similar", "http_similar_new"], weights=[4, 0.7, 0.3])[0]
        if kind == "http_recommendations":
            pool = samples["warm"] if rng.random() < 0.8 else samples["cold"]
            url = f"/recommendations/{rng.choice(pool)}"
        else:
            item = rng.choice(samples["items_pairs" if kind == "http_similar" else "items_new"])
            url = f"/items/{item}/similar?user_id={rng.choice(samples['warm'])}"
        t = time.perf_counter()
        ok, empty = True, False
        try:
            resp = local.client.get(url)
            ok = resp.status_code == 200
            empty = ok and len(resp.json()["items"]) == 0
            if not ok:
                print("   http error:", resp.status_code, resp.text[:200], flush=True)
        except Exception as exc:
            ok = False
            print("   http error:", repr(exc)[:200], flush=True)
        record(kind, (time.perf_counter() - t) * 1000, ok, empty)

    return work


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=500_000)
    ap.add_argument("--recs", type=int, default=20)
    ap.add_argument("--cold-users", type=int, default=100_000)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--categories", type=int, default=2_000)
    ap.add_argument("--republish", type=int, default=3, help="publications per phase (>= 3)")
    ap.add_argument("--sql-threads", type=int, default=1)
    ap.add_argument("--quiet-seconds", type=float, default=15.0, help="length of each phase without publisher")
    ap.add_argument("--http-concurrency", type=int, default=4)
    ap.add_argument("--max-requests", type=int, default=200_000, help="cap per phase")
    ap.add_argument("--workdir", help="where to build (default: a temp dir, removed afterwards)")
    args = ap.parse_args()

    work_dir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench_serving_"))
    work_dir.mkdir(parents=True, exist_ok=True)
    home = work_dir / "home"
    build, serving_db = home / "build.duckdb", home / "serving" / "recommendations.duckdb"
    home.mkdir(parents=True, exist_ok=True)
    build.unlink(missing_ok=True)
    results: dict = {
        "started_at": datetime.now(UTC).isoformat(),
        "args": vars(args),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "duckdb": duckdb.__version__,
            "load_avg_start": os.getloadavg(),
        },
    }
    server = None
    try:
        samples = make_build(build, args.users, args.recs, args.cold_users, args.items, args.categories)
        first = serving.publish(build, serving_db, model_version="bench", as_of=AS_OF)
        print(f"publish: {first.n_rows:,} rows, {first.bytes / 2**20:.0f} MiB in {first.seconds:.1f} s", flush=True)
        results["publish"] = {"seconds": round(first.seconds, 2), "bytes": first.bytes, "rows": first.row_counts}

        sql_work, reader = sql_phase(serving_db, samples, args.sql_threads)
        for _ in range(300):  # warm-up: first queries read from disk
            sql_work(random.Random(0), lambda *a: None)
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "--home", str(home), "api", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        import httpx

        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                if httpx.get(base + "/health").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        http_work = http_phase(base, samples)
        for _ in range(300):
            http_work(random.Random(1), lambda *a: None)

        print(f"phase quiet-sql: {args.sql_threads} thread(s), {args.quiet_seconds} s, no publisher", flush=True)
        stats, seconds, _ = run_workers([(sql_work, args.sql_threads)], seconds=args.quiet_seconds)
        results["quiet_sql"] = report(stats, seconds, "quiet")
        print(f"phase quiet-http: {args.http_concurrency} clients, {args.quiet_seconds} s, no publisher", flush=True)
        stats, seconds, _ = run_workers([(http_work, args.http_concurrency)], seconds=args.quiet_seconds)
        results["quiet_http"] = report(stats, seconds, "quiet")
        print(f"phase quiet-both: sql and http at once, {args.quiet_seconds} s, no publisher", flush=True)
        stats, seconds, _ = run_workers(
            [(sql_work, args.sql_threads), (http_work, args.http_concurrency)], seconds=args.quiet_seconds
        )
        results["quiet_both"] = report(stats, seconds, "quiet-both")

        for key, what, workers in [
            ("republishing_sql", f"sql alone ({args.sql_threads} thread(s))", [(sql_work, args.sql_threads)]),
            (
                "republishing_http",
                f"http alone ({args.http_concurrency} clients)",
                [(http_work, args.http_concurrency)],
            ),
            (
                "republishing_both",
                "sql and http at once (stress)",
                [(sql_work, args.sql_threads), (http_work, args.http_concurrency)],
            ),
        ]:
            print(f"phase {key}: {what} while another process publishes {args.republish} times", flush=True)
            sql_reloads, api_reloads = reader.reloads, httpx.get(base + "/health").json()["reloads"]
            publisher = start_republisher(build, serving_db, args.republish)
            stats, seconds, log = run_workers(workers, proc=publisher, max_requests=args.max_requests)
            health = httpx.get(base + "/health").json()
            results[key] = report(stats, seconds, key)
            results[key].update(
                {
                    "republished": log,
                    "sql_reader_reloads": reader.reloads - sql_reloads,
                    "api_reloads": health["reloads"] - api_reloads,
                    "api_model_version": health["model_version"],
                }
            )
        reader.close()
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        if not args.workdir:
            shutil.rmtree(work_dir, ignore_errors=True)

    results["machine"]["load_avg_end"] = os.getloadavg()
    phases = [v for v in results.values() if isinstance(v, dict) and "by_query" in v]
    republishing = [results[k] for k in ("republishing_sql", "republishing_http", "republishing_both")]
    goals = {
        "quiet_sql_p99_lt_10ms": results["quiet_sql"]["sql"]["p99_ms"] < 10,
        "quiet_http_p99_lt_50ms": results["quiet_http"]["http"]["p99_ms"] < 50,
        "republishing_sql_p99_lt_10ms": results["republishing_sql"]["sql"]["p99_ms"] < 10,
        "republishing_http_p99_lt_50ms": results["republishing_http"]["http"]["p99_ms"] < 50,
        "no_failures_or_empty": all(q["failures"] == 0 and q["empty"] == 0 for p in phases for q in p["by_query"]),
        "republished_3_times_per_phase": all(len(p["republished"]) >= 3 for p in republishing),
    }
    results["goals"] = goals
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"serving-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(results, indent=2, default=str))
    print("goals:", goals)
    print("wrote", out)
    return 0 if goals["no_failures_or_empty"] and goals["republished_3_times_per_phase"] else 1


if __name__ == "__main__":
    sys.exit(main())
