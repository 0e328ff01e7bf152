#!/usr/bin/env python3
"""Turns the JSON lines of one bench/compare.sh run into the comparison table (Tern / peer),
docs/benchmarks/results.json and the plots (PNG), and writes the table into docs/benchmarks.md
between its `bench:results` markers.

Usage: report.py RESULTS.jsonl... --docs DOCS_DIR
A later file's result for a scenario and server replaces the earlier files' (a partial rerun).
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

SERVERS = ["tern", "prosody", "ejabberd"]
START = "<!-- bench:results:start -->"
END = "<!-- bench:results:end -->"


def load(path):
    runs = []
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line.startswith("{"):
            runs.append(json.loads(line))
    return runs


def phase(run, name):
    for p in run.get("phases", []):
        if p["phase"] == name:
            return p
    return None


def complete_rounds(run, key):
    """Median of a presence figure over the rounds where every delivery arrived; a run where
    none did (the roster setup failed) has no figure."""
    vals = [r[key] for r in run.get("rounds", []) if r.get("complete")]
    if not vals:
        raise KeyError("no complete round")
    return statistics.median(vals)


def muc_figure(run, key):
    """A muc figure only from a run where every occupant received every message."""
    if not run.get("complete"):
        raise KeyError("incomplete muc run")
    return run[key]


def append_rate(run, writers):
    return next(a["items_per_sec"] for a in run["append"]
                if a["writers"] == writers and a["sync"] == "full")


def query_p99(run, part, shape):
    return next(q["latency"]["p99_ms"] for q in run[part]["queries"] if q["query"] == shape)


def best_login_level(run):
    levels = run.get("levels", [])
    return max(levels, key=lambda l: l["logins_per_s"]) if levels else None


# (scenario, label, better, unit, extractor)
METRICS = [
    ("idle", "server memory per idle TLS session", "lower", "KiB",
     lambda r: r["bytes_per_session"] / 1024),
    ("idle", "kernel slab per session (both socket ends)", "lower", "KiB",
     lambda r: r["kernel_slab_bytes_per_session"] / 1024),
    ("login", "logins per second (best level)", "higher", "/s",
     lambda r: r["best_logins_per_s"]),
    ("login", "server CPU per login (at that level)", "lower", "µs",
     lambda r: best_login_level(r)["server_cpu_us_per_login"]),
    ("login", "login time p99 (at that level)", "lower", "ms",
     lambda r: best_login_level(r)["latency"]["p99_ms"]),
    ("chat", "messages delivered per second (saturation)", "higher", "/s",
     lambda r: r["saturation_per_s"]),
    ("chat", "server CPU per delivered message (saturation)", "lower", "µs",
     lambda r: r["saturation_cpu_us_per_msg"]),
    ("chat", "latency p99 at 2,000 msg/s", "lower", "ms",
     lambda r: phase(r, "2000/s")["latency"]["p99_ms"]),
    ("chat", "latency p99.9 at 2,000 msg/s", "lower", "ms",
     lambda r: phase(r, "2000/s")["latency"]["p999_ms"]),
    ("chat", "server CPU per message at 2,000 msg/s", "lower", "µs",
     lambda r: phase(r, "2000/s")["server_cpu_us_per_msg"]),
    ("presence", "presence deliveries per server CPU-second", "higher", "/CPU-s",
     lambda r: complete_rounds(r, "deliveries_per_cpu_s")),
    ("presence", "time until quiet after all change presence", "lower", "s",
     lambda r: complete_rounds(r, "secs_until_quiet")),
    ("muc", "room deliveries per second", "higher", "/s",
     lambda r: muc_figure(r, "deliveries_per_s")),
    ("muc", "room deliveries per server CPU-second", "higher", "/CPU-s",
     lambda r: muc_figure(r, "deliveries_per_cpu_s")),
    ("muc", "room delivery latency p99", "lower", "ms",
     lambda r: muc_figure(r, "latency")["p99_ms"]),
    ("muc", "time until all occupants joined", "lower", "s",
     lambda r: muc_figure(r, "join_secs")),
    # Tern only: the peers run without a message archive.
    ("archive", "durable appends per second, 1 writer", "higher", "/s",
     lambda r: append_rate(r, 1)),
    ("archive", "durable appends per second, 256 writers", "higher", "/s",
     lambda r: append_rate(r, 256)),
    ("archive", "MAM last page p99, store", "lower", "ms",
     lambda r: query_p99(r, "query", "last_page")),
    ("archive", "MAM count() p99, store", "lower", "ms",
     lambda r: query_p99(r, "query", "count")),
    ("archive", "MAM last page p99, end to end", "lower", "ms",
     lambda r: query_p99(r, "e2e", "last_page")),
    ("archive", "MAM `with` page p99, end to end", "lower", "ms",
     lambda r: query_p99(r, "e2e", "with")),
]


def value(runs, scenario, server, fn):
    vals = []
    for r in runs:
        if r.get("scenario") == scenario and r.get("server") == server:
            try:
                vals.append(float(fn(r)))
            except (KeyError, TypeError, IndexError):
                pass
    return statistics.median(vals) if vals else None


def fmt(v, unit):
    if v is None:
        return "–"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def table(runs):
    rows = []
    for scenario, label, better, unit, fn in METRICS:
        vals = {s: value(runs, scenario, s, fn) for s in SERVERS}
        if all(v is None for v in vals.values()):
            continue
        ratios = {}
        for peer in SERVERS[1:]:
            t, p = vals["tern"], vals[peer]
            ratios[peer] = (t / p) if t is not None and p not in (None, 0) else None
        rows.append({"scenario": scenario, "metric": label, "unit": unit, "better": better,
                     "values": vals, "tern_over": ratios})
    return rows


def loads(runs):
    out = {}
    for r in runs:
        out.setdefault(r["server"], []).append(
            f"{r['scenario']} {r.get('loadavg_start', '?').split()[0]}→{r.get('loadavg_end', '?').split()[0]}")
    return out


def markdown(rows, runs):
    m = next((r["machine"] for r in runs if "machine" in r), {})
    when = sorted({(r["machine"].get("date", "?"), r["machine"].get("commit", "?")
                    + (" + uncommitted changes" if r["machine"].get("worktree_dirty") else ""))
                   for r in runs if "machine" in r})
    lines = [
        f"Runs from {when[0][0] if when else '?'} to {when[-1][0] if when else '?'}, "
        f"commits {', '.join(sorted({c for _, c in when}))}. "
        f"Machine: nproc {m.get('nproc', '?')}, {m.get('cpu', '?')}, kernel {m.get('kernel', '?')}; "
        f"mechanism {next((r['mech'] for r in runs if 'mech' in r), '?')}.",
        "",
        "| scenario | metric | better | Tern | Prosody | ejabberd | Tern ÷ Prosody | Tern ÷ ejabberd |",
        "|---|---|---|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        v, q = r["values"], r["tern_over"]
        ratio = lambda x: "–" if x is None else f"{x:.3g}"
        lines.append(
            f"| {r['scenario']} | {r['metric']} ({r['unit']}) | {r['better']} | "
            f"{fmt(v['tern'], r['unit'])} | {fmt(v['prosody'], r['unit'])} | "
            f"{fmt(v['ejabberd'], r['unit'])} | {ratio(q['prosody'])} | {ratio(q['ejabberd'])} |")
    sizes = sorted({r["query"]["items"] for r in runs
                    if r.get("scenario") == "archive" and "query" in r})
    if sizes:
        lines += ["", "archive: Tern only (Prosody and ejabberd run without a message archive); "
                  f"queries on one account's archive of {', '.join(f'{n:,}' for n in sizes)} "
                  "messages; appends with `synchronous = full`."]
    lines += ["", "Load average (1 min) at the start → end of each scenario, per server:", ""]
    for s, l in loads(runs).items():
        lines.append(f"- {s}: " + "; ".join(l))
    return "\n".join(lines) + "\n"


def plots(runs, out):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plots", file=sys.stderr)
        return []
    made = []
    colors = {"tern": "tab:green", "prosody": "tab:blue", "ejabberd": "tab:red"}
    chats = [r for r in runs if r.get("scenario") == "chat"]
    if chats:
        fig, ax = plt.subplots(1, 2, figsize=(12, 5.5))
        for r in chats:
            pts = sorted(
                (p["offered_per_s"], p["latency"]["p50_ms"], p["latency"]["p99_ms"],
                 p["latency"]["p999_ms"], p["server_cpu_us_per_msg"])
                for p in r["phases"] if p["offered_per_s"] is not None)
            sat = next((p for p in r["phases"] if p["offered_per_s"] is None), None)
            x = [p[0] for p in pts]
            c = colors.get(r["server"], "gray")
            ax[0].plot(x, [p[1] for p in pts], "o-", color=c, label=f"{r['server']} p50")
            ax[0].plot(x, [p[2] for p in pts], "s--", color=c, label=f"{r['server']} p99")
            ax[0].plot(x, [p[3] for p in pts], "^:", color=c, label=f"{r['server']} p99.9")
            ax[1].plot(x, [p[4] for p in pts], "o-", color=c, label=f"{r['server']} paced")
            if sat:
                ax[0].plot([sat["delivered_per_s"]], [sat["latency"]["p50_ms"]], "*",
                           color=c, markersize=12, label=f"{r['server']} saturation p50")
                ax[1].plot([sat["delivered_per_s"]], [sat["server_cpu_us_per_msg"]], "*",
                           color=c, markersize=12, label=f"{r['server']} saturation")
        ax[0].set_yscale("log")
        ax[0].set_xscale("log")
        ax[1].set_xscale("log")
        ax[0].set_xlabel("offered load, paced (messages/s, log); star: saturation (closed loop)")
        ax[0].set_ylabel("end-to-end latency (ms, log)")
        ax[0].set_title("chat: latency against load")
        ax[0].grid(True, which="both", alpha=0.3)
        ax[0].legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14))
        ax[1].set_xlabel("offered load (messages/s, log); star: saturation")
        ax[1].set_ylabel("server CPU per delivered message (µs, log)")
        ax[1].set_yscale("log")
        ax[1].set_title("chat: server CPU per message")
        ax[1].grid(True, which="both", alpha=0.3)
        ax[1].legend(fontsize=6, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.14))
        fig.tight_layout()
        p = out / "chat-latency.png"
        fig.savefig(p, dpi=110)
        made.append(p)
    logins = [r for r in runs if r.get("scenario") == "login"]
    if logins:
        fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
        for r in logins:
            c = colors.get(r["server"], "gray")
            lv = r["levels"]
            x = [l["concurrency"] for l in lv]
            ax[0].plot(x, [l["logins_per_s"] for l in lv], "o-", color=c, label=r["server"])
            ax[1].plot(x, [l["latency"]["p99_ms"] for l in lv], "s--", color=c,
                       label=f"{r['server']} p99")
            ax[1].plot(x, [l["latency"]["p50_ms"] for l in lv], "o-", color=c,
                       label=f"{r['server']} p50")
        for a in ax:
            a.set_xscale("log", base=2)
            a.set_xlabel("concurrent clients logging in")
            a.grid(True, which="both", alpha=0.3)
            a.legend(fontsize=7)
        ax[0].set_ylabel("complete logins per second")
        ax[0].set_title("login rate")
        ax[1].set_yscale("log")
        ax[1].set_ylabel("login time (ms, log)")
        ax[1].set_title("login time against concurrency")
        fig.tight_layout()
        p = out / "login.png"
        fig.savefig(p, dpi=110)
        made.append(p)
    return made


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results", nargs="+")
    ap.add_argument("--docs", default="docs")
    a = ap.parse_args()
    runs = []
    for f in a.results:
        new = load(f)
        redone = {(r.get("scenario"), r.get("server")) for r in new}
        runs = [r for r in runs if (r.get("scenario"), r.get("server")) not in redone] + new
    if not runs:
        sys.exit("no results")
    docs = Path(a.docs)
    out = docs / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    rows = table(runs)
    md = markdown(rows, runs)
    (out / "results.json").write_text(json.dumps({"table": rows, "runs": runs}, indent=1) + "\n")
    made = plots(runs, out)
    page = docs / "benchmarks.md"
    text = page.read_text() if page.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = f"{head}{START}\n{md}{END}{tail}"
    page.write_text(text)
    print(md)
    for p in made:
        print(f"plot: {p}")


if __name__ == "__main__":
    main()
