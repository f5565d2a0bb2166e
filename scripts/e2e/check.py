#!/usr/bin/env python3
"""Assertions of the container end-to-end test (scripts/e2e.sh), against a running stack.

Standard library only. Each subcommand prints what it checked and exits non-zero on failure:

  target      Prometheus scrapes the bot-server target and it is up
  runs        the run counters in Prometheus match what the bot-server reports
  promql      every PromQL expression of the dashboards, the datasources and the alert rules
              is valid and returns series from this Prometheus
  alert       an alert is active (pending or firing) in Prometheus
  spans       the OTLP receiver stand-in received the span tree of actor runs
  metric      print one metric family of a bot-server /metrics (for state comparisons)
"""

import argparse
import json
import re
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path


def fail(message):
    print(f"FAIL: {message}", file=sys.stderr)
    sys.exit(1)


def http_get(url, timeout=10):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def prom_api(prom, path, params=None):
    query = "?" + urllib.parse.urlencode(params) if params else ""
    try:
        with urllib.request.urlopen(f"{prom}/api/v1/{path}{query}", timeout=20) as response:
            return json.load(response)
    except urllib.error.HTTPError as err:
        body = err.read().decode(errors="replace")
        try:
            return json.loads(body)
        except ValueError:
            return {"status": "error", "errorType": f"HTTP {err.code}", "error": body[:200]}


def prom_query(prom, expr):
    """(ok, result or error message)."""
    body = prom_api(prom, "query", {"query": expr})
    if body.get("status") != "success":
        return False, f"{body.get('errorType')}: {body.get('error')}"
    return True, body["data"]["result"]


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def scrape(url):
    """The samples of a Prometheus text exposition: {(name, frozenset(labels)): value}."""
    samples = {}
    for line in http_get(url).splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            continue
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples


def runs_of(samples):
    return {
        (dict(labels)["actor"], dict(labels)["outcome"]): value
        for (name, labels), value in samples.items()
        if name == "botticelli_actor_runs_total"
    }


# ------------------------------------------------------------------------------------ target
def cmd_target(args):
    deadline = time.time() + args.timeout
    last = None
    while time.time() < deadline:
        body = prom_api(args.prom, "targets")
        for t in body.get("data", {}).get("activeTargets", []):
            if t["labels"].get("job") == args.job:
                last = t
                if t["health"] == "up" and t["labels"].get("instance") == args.instance:
                    print(f"ok: Prometheus target job={args.job} instance={t['labels']['instance']} "
                          f"scrapeUrl={t['scrapeUrl']} health=up lastScrape={t['lastScrape']}")
                    return
        time.sleep(2)
    fail(f"target {args.job}/{args.instance} not up within {args.timeout}s; last seen: {json.dumps(last)}")


# -------------------------------------------------------------------------------------- runs
def cmd_runs(args):
    """Sandwich: bot-server snapshot S1 at t1, a Prometheus scrape at ts > t1, snapshot S2 at t2
    > ts. Counters only grow, so S1 <= P <= S2 for every series; where S1 == S2 (no run of that
    actor in between) Prometheus must hold exactly that value."""
    deadline = time.time() + args.timeout
    while True:
        total = sum(runs_of(scrape(args.bot)).values())
        if total >= args.min_runs:
            break
        if time.time() > deadline:
            fail(f"only {total} runs finished within {args.timeout}s (wanted {args.min_runs})")
        time.sleep(2)
    best = None
    for attempt in range(1, args.attempts + 1):
        t1 = time.time()
        s1 = runs_of(scrape(args.bot))
        # Wait for a scrape that started after t1.
        while True:
            ok, result = prom_query(args.prom, 'min(timestamp(botticelli_actor_runs_total{job="botticelli-bot-server"}))')
            if ok and result and float(result[0]["value"][1]) > t1:
                break
            if time.time() > deadline + 60:
                fail("Prometheus did not scrape the bot-server again")
            time.sleep(1)
        ok, result = prom_query(args.prom, 'botticelli_actor_runs_total{job="botticelli-bot-server"}')
        if not ok:
            fail(result)
        p = {(r["metric"]["actor"], r["metric"]["outcome"]): float(r["value"][1]) for r in result}
        s2 = runs_of(scrape(args.bot))
        keys = sorted(set(s1) | set(p) | set(s2))
        exact, bounded, bad = [], [], []
        for k in keys:
            lo, mid, hi = s1.get(k, 0.0), p.get(k), s2.get(k, 0.0)
            if mid is None:
                if hi > 0 and lo > 0:
                    bad.append((k, lo, mid, hi))
                continue
            if not (lo <= mid <= hi):
                bad.append((k, lo, mid, hi))
            elif lo == hi:
                exact.append((k, mid))
            else:
                bounded.append((k, lo, mid, hi))
        if bad:
            for k, lo, mid, hi in bad:
                print(f"  MISMATCH {k[0]}/{k[1]}: bot-server {lo} before, Prometheus {mid}, bot-server {hi} after")
            fail("run counters in Prometheus do not match the bot-server's")
        if best is None or len(exact) > len(best[0]):
            best = (exact, bounded, attempt)
        if not bounded:
            break
    exact, bounded, attempt = best
    print(f"ok: run counters, attempt {attempt}: {len(exact)} series equal in Prometheus and on the bot-server,"
          f" {len(bounded)} changed during the scrape and lie between the two bot-server readings")
    for k, v in exact:
        print(f"  = {k[0]:<22} {k[1]:<10} {int(v)}")
    for k, lo, mid, hi in bounded:
        print(f"  ~ {k[0]:<22} {k[1]:<10} {int(lo)} <= {int(mid)} <= {int(hi)}")
    if len(exact) < args.min_exact:
        fail(f"only {len(exact)} series matched exactly (wanted {args.min_exact})")


# ------------------------------------------------------------------------------------ promql
SUBSTITUTIONS = [
    (r"\$__rate_interval|\$\{__rate_interval\}", "1m"),
    (r"\$__interval|\$\{__interval\}", "10s"),
    (r"\$__range|\$\{__range\}", "5m"),
    (r"\$\{?job\}?", "botticelli-bot-server"),
    (r"\$\{?actor\}?", ".*"),
    (r"\$\{?provider\}?", ".*"),
]
METRIC = re.compile(r"\b((?:botticelli|process)_[a-z0-9_]+|up)\b(?!\s*\()")


def substitute(expr):
    for pattern, value in SUBSTITUTIONS:
        expr = re.sub(pattern, value, expr)
    if "$" in expr:
        fail(f"unsubstituted Grafana variable in: {expr}")
    return expr


def dashboard_exprs(path):
    dash = json.loads(Path(path).read_text())
    out = []

    def walk(panels):
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                ds = (target.get("datasource") or panel.get("datasource") or {}).get("uid")
                if "expr" in target:
                    out.append((f"{dash['title']} / {panel['title']} [{target['refId']}]", target["expr"], ds))
                else:
                    out.append((f"{dash['title']} / {panel['title']} [{target['refId']}]", None, ds))

    walk(dash.get("panels", []))
    variables = []
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            q = var.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            variables.append((f"{dash['title']} / variable ${var['name']}", q))
    return out, variables


def metric_names(expr):
    names = set()
    for name in METRIC.findall(expr):
        names.add(name)
    return names


def cmd_promql(args):
    allow_empty = dict(a.split("=", 1) for a in args.allow_empty)
    failures = []
    checked = 0
    existence_cache = {}

    def exists(name):
        if name not in existence_cache:
            ok, result = prom_query(args.prom, f'count({{__name__="{name}"}})')
            existence_cache[name] = ok and bool(result)
        return existence_cache[name]

    def check(where, raw, require_series):
        nonlocal checked
        expr = substitute(raw)
        ok, result = prom_query(args.prom, expr)
        checked += 1
        names = metric_names(expr)
        missing = sorted(n for n in names if not exists(n))
        unexplained = [n for n in missing if n not in allow_empty]
        if not ok:
            failures.append(f"{where}: invalid: {result}\n      {expr}")
            print(f"  INVALID  {where}: {result}")
            return
        n = len(result)
        if unexplained:
            failures.append(f"{where}: metric(s) not in Prometheus: {', '.join(unexplained)}\n      {expr}")
            print(f"  MISSING  {where}: {', '.join(unexplained)}")
        elif n == 0 and require_series and not missing:
            failures.append(f"{where}: returned no series\n      {expr}")
            print(f"  EMPTY    {where}")
        elif n == 0 and missing:
            reasons = "; ".join(f"{m}: {allow_empty[m]}" for m in missing)
            print(f"  empty    {where}: valid, 0 series (allowed: {reasons})")
        else:
            print(f"  ok       {where}: {n} series")
        return n

    print(f"dashboards ({args.dashboards}):")
    for path in sorted(Path(args.dashboards).glob("*.json")):
        exprs, variables = dashboard_exprs(path)
        for where, expr, ds in exprs:
            if ds not in ("prometheus", "${DS_PROMETHEUS}"):
                print(f"  skipped  {where}: datasource {ds!r} (Grafana/Jaeger are not runnable here)")
                continue
            check(where, expr, True)
        for where, query in variables:
            m = re.fullmatch(r"\s*label_values\((.+),\s*([a-zA-Z_]+)\)\s*", substitute(query or ""))
            if not m:
                failures.append(f"{where}: unsupported variable query {query!r}")
                continue
            body = prom_api(args.prom, f"label/{m.group(2)}/values", {"match[]": m.group(1)})
            values = body.get("data") or []
            checked += 1
            if body.get("status") != "success" or not values:
                failures.append(f"{where}: {query} returned no values ({body.get('error')})")
                print(f"  EMPTY    {where}: {query}")
            else:
                print(f"  ok       {where}: {query} -> {', '.join(values)}")

    if args.datasources:
        print(f"datasource queries ({args.datasources}):")
        text = Path(args.datasources).read_text()
        for i, q in enumerate(re.findall(r"query:\s*'([^']*)'", text)):
            # Grafana replaces $__tags with the span's tags; $$ is the provisioning file's escape.
            expr = q.replace("$$", "$").replace("{$__tags}", '{actor="daily_tip"}')
            check(f"tracesToMetrics query {i + 1}", expr, True)

    print(f"alert rules (as loaded by Prometheus, compared with {args.rules_file}):")
    body = prom_api(args.prom, "rules")
    rules = [r for g in body["data"]["groups"] for r in g["rules"]]
    expected = len(re.findall(r"^\s*- (?:alert|record):", Path(args.rules_file).read_text(), re.M))
    if len(rules) != expected:
        failures.append(f"Prometheus loaded {len(rules)} rules, {args.rules_file} has {expected}")
    for rule in rules:
        where = f"rule {rule['name']}"
        if rule.get("health") != "ok":
            failures.append(f"{where}: health {rule.get('health')}: {rule.get('lastError')}")
            print(f"  BROKEN   {where}: {rule.get('lastError')}")
            continue
        # An alert's expression returns series only while its condition holds; what must
        # hold always is that it is valid, evaluates, and that every metric it reads exists.
        n = check(where, rule["query"], False)
        if n is not None:
            print(f"           state={rule.get('state')} (condition true for {n} series)")

    print(f"{checked} expressions checked")
    if failures:
        print("\n".join(f"  - {f}" for f in failures), file=sys.stderr)
        fail(f"{len(failures)} PromQL problem(s)")


# ------------------------------------------------------------------------------------- alert
def cmd_alert(args):
    deadline = time.time() + args.timeout
    want = dict(a.split("=", 1) for a in args.labels)
    states = set(args.state)
    seen = None
    while time.time() < deadline:
        body = prom_api(args.prom, "alerts")
        for alert in body["data"]["alerts"]:
            labels = alert["labels"]
            if labels.get("alertname") == args.name and all(labels.get(k) == v for k, v in want.items()):
                seen = alert
                if alert["state"] in states:
                    print(f"ok: alert {args.name} {json.dumps(want)} is {alert['state']} since {alert['activeAt']}"
                          f" (value {alert['value']})")
                    return
        time.sleep(3)
    fail(f"alert {args.name} {want} not {'/'.join(states)} within {args.timeout}s; last seen: {json.dumps(seen)}")


# ------------------------------------------------------------------------------------- spans
def tree_lines(spans, root, depth=0):
    lines = [f"{'  ' * depth}{root['name']}" + (f" actor={root['attributes'].get('actor')}" if root['name'] == 'actor.run' else "")]
    children = sorted((s for s in spans if s["parent_span_id"] == root["span_id"]), key=lambda s: s["start_time_unix_nano"])
    for child in children:
        lines.extend(tree_lines(spans, child, depth + 1))
    return lines


def cmd_spans(args):
    deadline = time.time() + args.timeout
    problems = ["no spans yet"]
    while time.time() < deadline:
        try:
            spans = json.loads(http_get(args.url))
        except Exception as err:  # the receiver may be starting
            problems = [f"cannot read {args.url}: {err}"]
            time.sleep(2)
            continue
        traces = {}
        for s in spans:
            traces.setdefault(s["trace_id"], []).append(s)
        found = {}
        problems = []
        for trace_id, trace in traces.items():
            roots = [s for s in trace if s["parent_span_id"] is None]
            if len(roots) != 1 or roots[0]["name"] != "actor.run":
                continue
            root = roots[0]
            ids = {s["span_id"] for s in trace}
            orphans = [s["name"] for s in trace if s["parent_span_id"] and s["parent_span_id"] not in ids]
            if orphans:
                continue  # the rest of this trace may still be in flight
            names = {s["name"] for s in trace}
            services = {s["resource"].get("service.name") for s in trace}
            if services != {args.service}:
                problems.append(f"trace {trace_id}: service.name {services}")
                continue
            by_id = {s["span_id"]: s for s in trace}
            # The LLM call (`chat {model}`, GenAI conventions) must sit under narrative.act,
            # which sits under actor.run.
            llm_ok = any(
                s["name"].startswith("chat ") and by_id[s["parent_span_id"]]["name"] == "narrative.act"
                and by_id[by_id[s["parent_span_id"]]["parent_span_id"]]["name"] == "actor.run"
                for s in trace if s["parent_span_id"] in by_id
            )
            store = any(n.startswith("store.") for n in names)
            if llm_ok and store and "narrative" not in found:
                found["narrative"] = (trace_id, root, trace)
            if "discord.post" in names and store and "discord" not in found:
                found["discord"] = (trace_id, root, trace)
        if "narrative" in found and "discord" in found:
            shown = {}
            for kind, (trace_id, root, trace) in found.items():
                shown.setdefault(trace_id, (root, trace, []))[2].append(kind)
            for trace_id, (root, trace, kinds) in shown.items():
                transports = {s["transport"] for s in trace}
                print(f"ok: trace {trace_id} ({' and '.join(kinds)}; {len(trace)} spans,"
                      f" received via {', '.join(sorted(transports))}):")
                for line in tree_lines(trace, root, 1):
                    print(f"  {line}")
            print(f"   ({len(spans)} spans in {len(traces)} traces received so far)")
            return
        time.sleep(2)
    fail(f"no complete actor.run trees with narrative.act/chat {{model}} and discord.post within {args.timeout}s: {problems}")


# ------------------------------------------------------------------------------------ metric
def cmd_metric(args):
    for (name, labels), value in sorted(scrape(args.bot).items(), key=lambda kv: (kv[0][0], sorted(kv[0][1]))):
        if name == args.name:
            print(" ".join(f"{k}={v}" for k, v in sorted(labels)), value)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("target")
    p.add_argument("--prom", required=True)
    p.add_argument("--job", default="botticelli-bot-server")
    p.add_argument("--instance", default="bot-server:9090")
    p.add_argument("--timeout", type=float, default=90)
    p.set_defaults(func=cmd_target)

    p = sub.add_parser("runs")
    p.add_argument("--prom", required=True)
    p.add_argument("--bot", required=True, help="the bot-server's /metrics URL")
    p.add_argument("--min-runs", type=int, default=8)
    p.add_argument("--min-exact", type=int, default=3)
    p.add_argument("--attempts", type=int, default=4)
    p.add_argument("--timeout", type=float, default=120)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("promql")
    p.add_argument("--prom", required=True)
    p.add_argument("--dashboards", required=True)
    p.add_argument("--datasources")
    p.add_argument("--rules-file", required=True)
    p.add_argument("--allow-empty", action="append", default=[], metavar="METRIC=REASON")
    p.set_defaults(func=cmd_promql)

    p = sub.add_parser("alert")
    p.add_argument("--prom", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--labels", nargs="*", default=[], metavar="KEY=VALUE")
    p.add_argument("--state", action="append", default=[])
    p.add_argument("--timeout", type=float, default=150)
    p.set_defaults(func=cmd_alert)

    p = sub.add_parser("spans")
    p.add_argument("--url", required=True)
    p.add_argument("--service", default="bot-server")
    p.add_argument("--timeout", type=float, default=90)
    p.set_defaults(func=cmd_spans)

    p = sub.add_parser("metric")
    p.add_argument("--bot", required=True)
    p.add_argument("name")
    p.set_defaults(func=cmd_metric)

    args = parser.parse_args()
    if getattr(args, "func", None) is cmd_alert and not args.state:
        args.state = ["pending", "firing"]
    args.func(args)


if __name__ == "__main__":
    main()
