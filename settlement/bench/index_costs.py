# Backend CPU of inserting the bench's real orders/fills rows under different index sets (settle6,
# BENCHMARKS.md "Index alternatives in plain SQL"). Run after `castle bench settlement --database-url URL
# --only copy,lag` left its rows in castle_bench_run0:  DSN="host=... port=... user=postgres dbname=castle_bench_run0"
#   python3 index_costs.py [REPEATS] [o|f] [SET,SET...]   (needs python3-psycopg2)
import psycopg2, sys, os, time
DSN = os.environ["DSN"]
CHUNKS = 20
def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
ORDER_SETS = {
  "v4": ["ALTER TABLE {t} ADD PRIMARY KEY (account, order_id)",
         "CREATE INDEX ON {t} (account, client_order_id COLLATE \"C\") WHERE client_order_id <> ''",
         "CREATE INDEX ON {t} USING brin (created_ts)", "CREATE INDEX ON {t} (order_id) WHERE status = 0"],
  "noclient": ["ALTER TABLE {t} ADD PRIMARY KEY (account, order_id)",
         "CREATE INDEX ON {t} USING brin (created_ts)", "CREATE INDEX ON {t} (order_id) WHERE status = 0"],
  "hashclient": ["ALTER TABLE {t} ADD PRIMARY KEY (account, order_id)",
         "CREATE INDEX ON {t} USING hash (hashtextextended(client_order_id, account)) WHERE client_order_id <> ''",
         "CREATE INDEX ON {t} USING brin (created_ts)", "CREATE INDEX ON {t} (order_id) WHERE status = 0"],
  "btreehashclient": ["ALTER TABLE {t} ADD PRIMARY KEY (account, order_id)",
         "CREATE INDEX ON {t} (hashtextextended(client_order_id, account)) WHERE client_order_id <> ''",
         "CREATE INDEX ON {t} USING brin (created_ts)", "CREATE INDEX ON {t} (order_id) WHERE status = 0"],
  "idpk_only": ["ALTER TABLE {t} ADD PRIMARY KEY (order_id)",
         "CREATE INDEX ON {t} USING brin (created_ts)", "CREATE INDEX ON {t} (order_id) WHERE status = 0"],
  "client_nonpartial": ["ALTER TABLE {t} ADD PRIMARY KEY (account, order_id)",
         "CREATE INDEX ON {t} (account, client_order_id COLLATE \"C\")",
         "CREATE INDEX ON {t} USING brin (created_ts)", "CREATE INDEX ON {t} (order_id) WHERE status = 0"],
  "client_nodedup": ["ALTER TABLE {t} ADD PRIMARY KEY (account, order_id)",
         "CREATE INDEX ON {t} (account, client_order_id COLLATE \"C\") WITH (deduplicate_items = off) WHERE client_order_id <> ''",
         "CREATE INDEX ON {t} USING brin (created_ts)", "CREATE INDEX ON {t} (order_id) WHERE status = 0"],
  "ctl_bigint2": ["ALTER TABLE {t} ADD PRIMARY KEY (account, order_id)",
         "CREATE INDEX ON {t} (account, created_seq)",
         "CREATE INDEX ON {t} USING brin (created_ts)", "CREATE INDEX ON {t} (order_id) WHERE status = 0"],
  "v5": ["ALTER TABLE {t} ADD PRIMARY KEY (order_id)",
         "CREATE INDEX ON {t} (account, client_order_id COLLATE \"C\") WHERE client_order_id <> ''",
         "CREATE INDEX ON {t} USING brin (created_ts)", "CREATE INDEX ON {t} (order_id) WHERE status = 0"],
  "v5_idorder": ["ALTER TABLE {t} ADD PRIMARY KEY (order_id)",
         "CREATE INDEX ON {t} (account, client_order_id COLLATE \"C\") WHERE client_order_id <> ''",
         "CREATE INDEX ON {t} USING brin (created_ts)", "CREATE INDEX ON {t} (order_id) WHERE status = 0"],
  "idpk": ["ALTER TABLE {t} ADD PRIMARY KEY (order_id)"],
  "idpk_client": ["ALTER TABLE {t} ADD PRIMARY KEY (order_id)",
         "CREATE INDEX ON {t} (account, client_order_id COLLATE \"C\") WHERE client_order_id <> ''"],
  "idpk_client_open": ["ALTER TABLE {t} ADD PRIMARY KEY (order_id)",
         "CREATE INDEX ON {t} (account, client_order_id COLLATE \"C\") WHERE client_order_id <> ''",
         "CREATE INDEX ON {t} (order_id) WHERE status = 0"],
  "heap": [],
}
FILL_SETS = {
  "v4": ["ALTER TABLE {t} ADD PRIMARY KEY (trade_id)", "CREATE INDEX ON {t} (maker_account, trade_id)",
         "CREATE INDEX ON {t} (taker_account, trade_id)", "CREATE INDEX ON {t} USING brin (ts)"],
  "pk_brin": ["ALTER TABLE {t} ADD PRIMARY KEY (trade_id)", "CREATE INDEX ON {t} USING brin (ts)"],
  "v5": ["ALTER TABLE {t} ADD PRIMARY KEY (trade_id)", "CREATE INDEX ON {t} USING brin (ts)"],
  "pk": ["ALTER TABLE {t} ADD PRIMARY KEY (trade_id)"],
  "pk_maker": ["ALTER TABLE {t} ADD PRIMARY KEY (trade_id)", "CREATE INDEX ON {t} (maker_account, trade_id)", "CREATE INDEX ON {t} USING brin (ts)"],
  "heap": [],
}
# Version 5 (settle7): one history map row per (account, chunk) in the same statement group as
# the chunk's rows; the map rows are built beforehand (the consumer builds them client-side)
# and copied from a staging table, so only the map's insert cost is measured.
MAP_DDL = "CREATE TABLE {m} (account BIGINT NOT NULL, first_id BIGINT NOT NULL, ids BIGINT[] NOT NULL, " \
          "PRIMARY KEY (account, first_id)) WITH (toast_tuple_target = 8160)"
def map_stage(cur, kind, lo, step):
    src = "SELECT account, order_id AS id FROM orders" if kind == "o" else \
          "SELECT maker_account AS account, trade_id AS id FROM fills UNION SELECT taker_account, trade_id FROM fills"
    cur.execute("DROP TABLE IF EXISTS map_stage")
    cur.execute(f"CREATE TABLE map_stage AS SELECT (id - %s) / %s AS chunk, account, min(id) AS first_id, "
                f"array_agg(id ORDER BY id) AS ids FROM ({src}) s GROUP BY 1, 2", (lo, step))
def run(kind, name, stmts):
    c = psycopg2.connect(DSN); c.autocommit = True; cur = c.cursor()
    src = "orders" if kind == "o" else "fills"; key = "order_id" if kind == "o" else "trade_id"
    t = f"x_{kind}_{name}"
    cur.execute(f"DROP TABLE IF EXISTS {t}"); cur.execute(f"CREATE TABLE {t} (LIKE {src} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
    for s in stmts: cur.execute(s.format(t=t))
    cur.execute(f"SELECT min({key}), max({key}) FROM {src}"); lo, hi = cur.fetchone()
    step = (hi - lo) // CHUNKS + 1
    order = "account, order_id" if kind == "o" else "trade_id"
    maps = name.startswith("v5")
    if kind == "o" and name.startswith("idpk"):
        order = "account, order_id"
    if maps:
        order = key if name == "v5_idorder" or kind == "f" else "account, order_id"
        map_stage(cur, kind, lo, step)
        cur.execute(f"DROP TABLE IF EXISTS {t}_map"); cur.execute(MAP_DDL.format(m=f"{t}_map"))
        try:
            cur.execute(f"ALTER TABLE {t}_map ALTER COLUMN ids SET COMPRESSION lz4")
        except psycopg2.Error:
            pass
    cur.execute("SELECT pg_backend_pid()"); pid = cur.fetchone()[0]
    t0 = cpu(pid); w0 = time.time()
    for i in range(CHUNKS):
        a = lo + i * step
        cur.execute(f"INSERT INTO {t} SELECT * FROM {src} WHERE {key} >= %s AND {key} < %s ORDER BY {order}", (a, a + step))
        if maps:
            cur.execute(f"INSERT INTO {t}_map SELECT account, first_id, ids FROM map_stage WHERE chunk = %s ORDER BY account, first_id", (i,))
    dt = cpu(pid) - t0; wt = time.time() - w0
    cur.execute(f"DROP TABLE {t}")
    if maps:
        cur.execute(f"DROP TABLE {t}_map")
    c.close()
    return dt, wt
reps = int(sys.argv[1]) if len(sys.argv) > 1 else 3
which = sys.argv[2] if len(sys.argv) > 2 else "o"
sets = {k: v for k, v in (ORDER_SETS if which == "o" else FILL_SETS).items() if len(sys.argv) < 4 or k in sys.argv[3].split(",")}
res = {k: [] for k in sets}
for r in range(reps):
    for k, v in sets.items():
        res[k].append(run(which, k, v))
for k, v in res.items():
    cpus = sorted(x[0] for x in v)
    print(f"{which} {k:16s} backend CPU s: {' '.join('%.2f' % x for x in cpus)}  median {cpus[len(cpus)//2]:.2f}  = {cpus[len(cpus)//2]/0.2:.2f} us/fill")
