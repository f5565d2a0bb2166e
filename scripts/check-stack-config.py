#!/usr/bin/env python3
"""Static checks of the stack's configuration files (`just check-stack-config`, .ci/run).

Fails, naming the file and the entry, when:
  compose   docker-compose.observability.yml publishes a port without a host address, or with an
            address that does not default to 127.0.0.1 (BOTTICELLI_BIND_ADDRESS); a password,
            secret, token or key has a non-empty default; Grafana's admin password is not read
            from a secret file, or anonymous access is on by default; Prometheus runs with
            --web.enable-lifecycle; Jaeger is not Jaeger 2 with jaeger/config.yaml mounted; the
            Alertmanager service or its config mount is missing.
  jaeger    jaeger/config.yaml does not parse, or its pipeline is not wired: traces must go
            otlp receiver (0.0.0.0:4317 gRPC, 0.0.0.0:4318 HTTP) -> jaeger_storage_exporter into
            a jaeger_storage backend that jaeger_query (UI on :16686) reads; every component a
            pipeline or the extensions list names is defined.
  grafana   a dashboard query selects a metric without job=~"$job" (or names a job itself), a
            datasource reference is not a ${DS_...} variable (Grafana's built-in annotation
            datasource excepted), the `job` or a DS_ variable or its __inputs entry is missing.
  alerts    an alert rule has no runbook_url, or it does not point at a section of
            docs/TROUBLESHOOTING.md that exists.
  alertmanager  alertmanager/alertmanager.yml's Discord receiver has an inline webhook_url
            instead of webhook_url_file, or prometheus.yml does not send alerts to
            alertmanager:9093.
  shutdown  the bot-server's stop timeout (the compose file's stop_grace_period, and
            containers/containers.conf's stop_timeout for a plain `podman stop`) is missing, the
            two disagree, or it is not at least the shutdown budget of the image's config
            (containers/actor_server.container.toml) and of the e2e's
            (scripts/e2e/actor_server.e2e.toml, actor_server.hang.toml) plus a margin: shutdown_grace_seconds +
            SHUTDOWN_TAIL_SECONDS (src/shutdown.rs, whose unit test keeps the numbers here in
            step) + STOP_MARGIN_SECONDS. Past it, a stop ends in SIGKILL (exit 137).

`--self-test` runs every check on copies of the files with one fault put in each, and fails if
a fault goes unnoticed (the checks are tested, not only run).
"""
import copy
import json
import re
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BIND = "${BOTTICELLI_BIND_ADDRESS:-127.0.0.1}"
REPO_DOC = "https://github.com/botticelli/bot-server/blob/main/docs/TROUBLESHOOTING.md#"
METRIC = re.compile(r"\b((?:botticelli|process)_[a-z0-9_]+|up)\b(?!\s*\()")
SECRETISH = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY|WEBHOOK_URL", re.I)
# The bot-server's shutdown budget is shutdown_grace_seconds + this (src/shutdown.rs: TAIL).
SHUTDOWN_TAIL_SECONDS = 10
# [server] shutdown_grace_seconds when a config leaves it out (src/config/mod.rs).
DEFAULT_SHUTDOWN_GRACE_SECONDS = 15
# What the stop timeout must leave beyond the budget (process start-up, podman's own work).
STOP_MARGIN_SECONDS = 5
# The bot-server configs the stack runs: the image's, and the one the e2e test mounts.
BOT_CONFIGS = ("containers/actor_server.container.toml", "scripts/e2e/actor_server.e2e.toml",
               "scripts/e2e/actor_server.hang.toml")


def load():
    return {
        "compose": yaml.safe_load((ROOT / "docker-compose.observability.yml").read_text()),
        "env_example": (ROOT / ".env.example").read_text(),
        "gitignore": (ROOT / ".gitignore").read_text(),
        "jaeger": yaml.safe_load((ROOT / "jaeger/config.yaml").read_text()),
        "dashboards": {p.name: json.loads(p.read_text()) for p in sorted((ROOT / "grafana/dashboards").glob("*.json"))},
        "alerts": yaml.safe_load((ROOT / "prometheus/alerts.yml").read_text()),
        "troubleshooting": (ROOT / "docs/TROUBLESHOOTING.md").read_text(),
        "alertmanager": yaml.safe_load((ROOT / "alertmanager/alertmanager.yml").read_text()),
        "prometheus": yaml.safe_load((ROOT / "prometheus.yml").read_text()),
        "containers_conf": tomllib.loads((ROOT / "containers/containers.conf").read_text()),
        "bot_configs": {p: tomllib.loads((ROOT / p).read_text()) for p in BOT_CONFIGS},
    }


# ------------------------------------------------------------------------------------ compose
def check_compose(c):
    errors = []
    compose = c["compose"]
    services = compose.get("services", {})
    for name, svc in services.items():
        for port in svc.get("ports", []) or []:
            if isinstance(port, dict):
                if port.get("host_ip") not in ("127.0.0.1", BIND):
                    errors.append(f"compose: {name}: port {port} has no host_ip 127.0.0.1 / {BIND}")
                continue
            spec = str(port)
            if not spec.startswith(BIND + ":") and not spec.startswith("127.0.0.1:"):
                errors.append(f"compose: {name}: port \"{spec}\" is not published on {BIND} (all interfaces)")
        env = svc.get("environment", {}) or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, None) for e in env)
        for key, value in env.items():
            if not SECRETISH.search(key) or key.endswith("__FILE"):
                continue
            value = "" if value is None else str(value)
            # NAME_FILE naming a mounted compose secret: a path, not a secret.
            if key.endswith("_FILE") and value.startswith("/run/secrets/"):
                continue
            m = re.fullmatch(r"\$\{(\w+)(?::?-(.*))?\}", value)
            if m:
                if m.group(2):
                    errors.append(f"compose: {name}: {key} has a default value ({value})")
            elif value:
                errors.append(f"compose: {name}: {key} is set to a literal value in the compose file")
    grafana = services.get("grafana", {})
    genv = grafana.get("environment", {}) or {}
    if "GF_SECURITY_ADMIN_PASSWORD" in genv:
        errors.append("compose: grafana: GF_SECURITY_ADMIN_PASSWORD is set (use GF_SECURITY_ADMIN_PASSWORD__FILE and a secret)")
    pw_file = genv.get("GF_SECURITY_ADMIN_PASSWORD__FILE", "")
    if not pw_file.startswith("/run/secrets/"):
        errors.append("compose: grafana: GF_SECURITY_ADMIN_PASSWORD__FILE does not read a /run/secrets/ file")
    else:
        secret = pw_file.rsplit("/", 1)[1]
        declared = (compose.get("secrets") or {}).get(secret) or {}
        if secret not in (grafana.get("secrets") or []) or "file" not in declared:
            errors.append(f"compose: grafana: secret {secret} is not declared from a file and given to grafana")
    anon = str(genv.get("GF_AUTH_ANONYMOUS_ENABLED", "false"))
    if re.fullmatch(r"\$\{\w+:-(.*)\}", anon):
        anon = re.fullmatch(r"\$\{\w+:-(.*)\}", anon).group(1)
    if anon.lower() != "false":
        errors.append(f"compose: grafana: anonymous access is on by default ({genv.get('GF_AUTH_ANONYMOUS_ENABLED')})")
    if any("web.enable-lifecycle" in str(a) for a in services.get("prometheus", {}).get("command", []) or []):
        errors.append("compose: prometheus: --web.enable-lifecycle is on")
    jaeger = services.get("jaeger", {})
    if not re.search(r"jaegertracing/jaeger:2\.", str(jaeger.get("image", ""))):
        errors.append(f"compose: jaeger: image {jaeger.get('image')} is not jaegertracing/jaeger:2.x")
    if "--config=/etc/jaeger/config.yaml" not in (jaeger.get("command") or []):
        errors.append("compose: jaeger: not started with --config=/etc/jaeger/config.yaml")
    if not any(str(v).startswith("./jaeger/config.yaml:/etc/jaeger/config.yaml") for v in jaeger.get("volumes", []) or []):
        errors.append("compose: jaeger: jaeger/config.yaml is not mounted at /etc/jaeger/config.yaml")
    am = services.get("alertmanager")
    if not am:
        errors.append("compose: no alertmanager service")
    elif not any(str(v).startswith("./alertmanager/alertmanager.yml:") for v in am.get("volumes", []) or []):
        errors.append("compose: alertmanager: alertmanager/alertmanager.yml is not mounted")
    if not re.search(r"^BOTTICELLI_BIND_ADDRESS=127\.0\.0\.1$", c["env_example"], re.M):
        errors.append(".env.example: BOTTICELLI_BIND_ADDRESS=127.0.0.1 is not documented")
    if re.search(r"^\w*PASSWORD=\S", c["env_example"], re.M):
        errors.append(".env.example: a password has a value")
    if not re.search(r"^/?secrets/?$", c["gitignore"], re.M):
        errors.append(".gitignore: secrets/ is not ignored")
    return errors


# ------------------------------------------------------------------------------------- jaeger
def check_jaeger(c):
    errors = []
    cfg = c["jaeger"] or {}
    service = cfg.get("service") or {}
    traces = (service.get("pipelines") or {}).get("traces")
    if not traces:
        return ["jaeger: service.pipelines.traces is missing"]
    if "otlp" not in (traces.get("receivers") or []):
        errors.append("jaeger: service.pipelines.traces.receivers does not include otlp")
    if "jaeger_storage_exporter" not in (traces.get("exporters") or []):
        errors.append("jaeger: service.pipelines.traces.exporters does not include jaeger_storage_exporter")
    for kind in ("receivers", "processors", "exporters"):
        for comp in traces.get(kind) or []:
            if comp not in (cfg.get(kind) or {}):
                errors.append(f"jaeger: pipeline component {kind}.{comp} is not defined")
    for ext in service.get("extensions") or []:
        if ext not in (cfg.get("extensions") or {}):
            errors.append(f"jaeger: extension {ext} is listed in service.extensions but not defined")
    for needed in ("jaeger_storage", "jaeger_query"):
        if needed not in (service.get("extensions") or []):
            errors.append(f"jaeger: service.extensions does not include {needed}")
    exts = cfg.get("extensions") or {}
    backends = ((exts.get("jaeger_storage") or {}).get("backends")) or {}
    if not any("memory" in (b or {}) for b in backends.values()):
        errors.append("jaeger: jaeger_storage has no memory backend")
    query = exts.get("jaeger_query") or {}
    q_store = (query.get("storage") or {}).get("traces")
    if q_store not in backends:
        errors.append(f"jaeger: jaeger_query.storage.traces ({q_store}) is not a jaeger_storage backend")
    e_store = ((cfg.get("exporters") or {}).get("jaeger_storage_exporter") or {}).get("trace_storage")
    if e_store not in backends:
        errors.append(f"jaeger: jaeger_storage_exporter.trace_storage ({e_store}) is not a jaeger_storage backend")
    if e_store != q_store:
        errors.append(f"jaeger: the exporter writes {e_store} but jaeger_query reads {q_store}")
    if ((query.get("http") or {}).get("endpoint")) != "0.0.0.0:16686":
        errors.append("jaeger: jaeger_query.http.endpoint is not 0.0.0.0:16686 (the UI port compose publishes)")
    protocols = (((cfg.get("receivers") or {}).get("otlp") or {}).get("protocols")) or {}
    for proto, port in (("grpc", 4317), ("http", 4318)):
        endpoint = ((protocols.get(proto) or {}).get("endpoint"))
        if endpoint != f"0.0.0.0:{port}":
            errors.append(f"jaeger: otlp {proto} endpoint is {endpoint}, not 0.0.0.0:{port}")
    return errors


# ------------------------------------------------------------------------------------ grafana
def metric_selectors(expr):
    """(metric, matchers) for every metric selector of a PromQL expression."""
    out = []
    pos = 0
    while pos < len(expr):
        ch = expr[pos]
        if ch == "{":
            pos = expr.index("}", pos) + 1
            continue
        if ch == '"':
            pos = expr.index('"', pos + 1) + 1
            continue
        m = METRIC.match(expr, pos)
        if m and (pos == 0 or not (expr[pos - 1].isalnum() or expr[pos - 1] in "_:")):
            pos = m.end()
            matchers = ""
            if pos < len(expr) and expr[pos] == "{":
                end = expr.index("}", pos)
                matchers = expr[pos + 1:end]
                pos = end + 1
            out.append((m.group(1), matchers))
            continue
        pos += 1
    return out


def check_grafana(c):
    errors = []
    for name, dash in c["dashboards"].items():
        where = f"grafana/dashboards/{name}"
        variables = {v.get("name"): v for v in dash.get("templating", {}).get("list", [])}
        inputs = {i.get("name") for i in dash.get("__inputs", [])}
        if "job" not in variables:
            errors.append(f"{where}: no `job` template variable")
        exprs = []

        def walk(node, path):
            if isinstance(node, dict):
                ds = node.get("datasource")
                if ds is not None:
                    uid = ds.get("uid") if isinstance(ds, dict) else ds
                    builtin = isinstance(ds, dict) and ds.get("type") == "grafana" and uid == "-- Grafana --"
                    m = re.fullmatch(r"\$\{(DS_[A-Z0-9_]+)\}", str(uid))
                    if not builtin and not m:
                        errors.append(f"{where}: {path}: datasource {ds!r} is not a ${{DS_...}} variable")
                    elif m:
                        if m.group(1) not in variables or variables[m.group(1)].get("type") != "datasource":
                            errors.append(f"{where}: {path}: ${{{m.group(1)}}} is not a datasource template variable")
                        if m.group(1) not in inputs:
                            errors.append(f"{where}: {path}: ${{{m.group(1)}}} has no __inputs entry (import)")
                if "expr" in node:
                    exprs.append((path, node["expr"]))
                for k, v in node.items():
                    walk(v, f"{path}/{node.get('title', k) if k == 'panels' else k}")
            elif isinstance(node, list):
                for i, v in enumerate(node):
                    walk(v, f"{path}[{i}]")

        walk({k: v for k, v in dash.items() if k != "__inputs"}, "")
        for var in dash.get("templating", {}).get("list", []):
            if var.get("type") == "query" and var.get("name") != "job":
                q = var.get("query")
                exprs.append((f"variable ${var.get('name')}", q.get("query") if isinstance(q, dict) else q))
        for path, expr in exprs:
            if re.search(r'\bjob\s*=\s*"', expr or ""):
                errors.append(f"{where}: {path}: names a job itself: {expr}")
            for metric, matchers in metric_selectors(expr or ""):
                if 'job=~"$job"' not in matchers.replace(" ", ""):
                    errors.append(f"{where}: {path}: {metric} is selected without job=~\"$job\": {expr}")
    return errors


# ------------------------------------------------------------------------------------- alerts
def github_anchor(heading):
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def check_alerts(c):
    errors = []
    anchors = {github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", c["troubleshooting"], re.M)}
    for group in c["alerts"].get("groups", []):
        for rule in group.get("rules", []):
            if "alert" not in rule:
                continue
            ann = rule.get("annotations") or {}
            url = ann.get("runbook_url")
            if "runbook" in ann:
                errors.append(f"prometheus/alerts.yml: {rule['alert']}: `runbook` annotation (use runbook_url)")
            if not url:
                errors.append(f"prometheus/alerts.yml: {rule['alert']}: no runbook_url annotation")
            elif not url.startswith(REPO_DOC):
                errors.append(f"prometheus/alerts.yml: {rule['alert']}: runbook_url {url} is not {REPO_DOC}<section>")
            elif url[len(REPO_DOC):] not in anchors:
                errors.append(f"prometheus/alerts.yml: {rule['alert']}: runbook_url anchor #{url[len(REPO_DOC):]} is no section of docs/TROUBLESHOOTING.md")
    return errors


# ------------------------------------------------------------------------------- alertmanager
def check_alertmanager(c):
    errors = []
    am = c["alertmanager"] or {}
    receivers = {r.get("name"): r for r in am.get("receivers", [])}
    if (am.get("route") or {}).get("receiver") not in receivers:
        errors.append("alertmanager: the route's receiver is not defined")
    discord = [d for r in receivers.values() for d in r.get("discord_configs", []) or []]
    if not discord:
        errors.append("alertmanager: no discord_configs receiver")
    for d in discord:
        if "webhook_url" in d:
            errors.append("alertmanager: a discord_configs entry has an inline webhook_url (a secret): use webhook_url_file")
        if not str(d.get("webhook_url_file", "")).startswith("/run/secrets/"):
            errors.append("alertmanager: discord webhook_url_file is not a /run/secrets/ file")
    targets = [t for a in ((c["prometheus"].get("alerting") or {}).get("alertmanagers") or [])
               for s in a.get("static_configs", []) for t in s.get("targets", [])]
    if "alertmanager:9093" not in targets:
        errors.append("prometheus.yml: alerting does not send to alertmanager:9093")
    return errors


# ----------------------------------------------------------------------------------- shutdown
def seconds(value):
    """A duration in seconds: a number, or a string with units ("30s", "1m30s", "2h")."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {value!r}")
    unit = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    return sum(float(n) * unit[u] for n, u in parts)


def check_shutdown(c):
    errors = []
    bot = (c["compose"].get("services") or {}).get("bot-server") or {}
    period = bot.get("stop_grace_period")
    conf = (c["containers_conf"].get("engine") or {}).get("stop_timeout")
    if period is None:
        errors.append("compose: bot-server: no stop_grace_period (podman-compose's default is 10 s)")
    if conf is None:
        errors.append("containers/containers.conf: [engine] has no stop_timeout (podman's default is 10 s)")
    try:
        period = None if period is None else seconds(period)
    except ValueError as err:
        errors.append(f"compose: bot-server: stop_grace_period: {err}")
        period = None
    if period is not None and conf is not None and period != float(conf):
        errors.append(f"compose: bot-server: stop_grace_period ({period:g} s) is not containers/containers.conf's "
                      f"stop_timeout ({conf} s): `podman-compose stop` and `podman stop` would give it different times")
    stop = min(t for t in (period, None if conf is None else float(conf), float("inf")) if t is not None)
    if stop == float("inf"):
        return errors
    for path, cfg in c["bot_configs"].items():
        raw = (cfg.get("server") or {}).get("shutdown_grace_seconds", DEFAULT_SHUTDOWN_GRACE_SECONDS)
        try:
            grace = seconds(raw)
        except ValueError as err:
            errors.append(f"{path}: shutdown_grace_seconds: {err}")
            continue
        budget = grace + SHUTDOWN_TAIL_SECONDS
        if budget + STOP_MARGIN_SECONDS > stop:
            errors.append(f"{path}: shutdown_grace_seconds = {raw}: the bot-server may take {budget:g} s to stop "
                          f"(grace + {SHUTDOWN_TAIL_SECONDS} s), which with a {STOP_MARGIN_SECONDS} s margin does "
                          f"not fit the {stop:g} s stop timeout (compose stop_grace_period, containers.conf "
                          f"stop_timeout): lower the grace or raise both")
    return errors


CHECKS = [check_compose, check_jaeger, check_grafana, check_alerts, check_alertmanager, check_shutdown]


def run(c):
    errors = []
    for check in CHECKS:
        errors += check(c)
    return errors


# ------------------------------------------------------------------------------------ self-test
def faults():
    """(name, mutate(c)): one fault each check must catch."""
    def port_without_address(c):
        c["compose"]["services"]["prometheus"]["ports"] = ["${PROMETHEUS_PORT:-9091}:9090"]

    def default_password(c):
        env = c["compose"]["services"]["grafana"]["environment"]
        env["GF_SECURITY_ADMIN_PASSWORD"] = "${GRAFANA_ADMIN_PASSWORD:-admin}"

    def anonymous_on(c):
        c["compose"]["services"]["grafana"]["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] = "${GRAFANA_ANONYMOUS:-true}"

    def lifecycle(c):
        c["compose"]["services"]["prometheus"]["command"].append("--web.enable-lifecycle")

    def jaeger_1(c):
        c["compose"]["services"]["jaeger"]["image"] = "docker.io/jaegertracing/all-in-one:1.62.0"

    def unwired_pipeline(c):
        c["jaeger"]["service"]["pipelines"]["traces"]["receivers"] = ["zipkin"]

    def query_reads_other_store(c):
        c["jaeger"]["extensions"]["jaeger_query"]["storage"]["traces"] = "elsewhere"

    def hard_coded_job(c):
        dash = next(iter(c["dashboards"].values()))

        def first_target(panels):
            for p in panels:
                for t in p.get("targets", []):
                    if "expr" in t:
                        return t
                found = first_target(p.get("panels", []))
                if found:
                    return found

        t = first_target(dash["panels"])
        t["expr"] = t["expr"].replace('job=~"$job"', 'job="botticelli-bot-server"')

    def metric_without_job(c):
        dash = list(c["dashboards"].values())[-1]
        dash["panels"].append({"title": "x", "targets": [{"expr": "sum(rate(botticelli_actor_runs_total[5m]))"}]})

    def fixed_datasource(c):
        dash = next(iter(c["dashboards"].values()))
        dash["panels"].append({"title": "y", "datasource": {"type": "prometheus", "uid": "prometheus"}})

    def missing_runbook(c):
        del c["alerts"]["groups"][0]["rules"][0]["annotations"]["runbook_url"]

    def dead_anchor(c):
        c["alerts"]["groups"][0]["rules"][0]["annotations"]["runbook_url"] = REPO_DOC + "no-such-section"

    def inline_webhook(c):
        c["alertmanager"]["receivers"][0]["discord_configs"][0]["webhook_url"] = "https://discord.com/api/webhooks/1/x"

    def no_alerting(c):
        c["prometheus"].pop("alerting", None)

    def grace_over_stop_timeout(c):
        c["bot_configs"]["containers/actor_server.container.toml"]["server"]["shutdown_grace_seconds"] = "20s"

    def default_grace_over_stop_timeout(c):
        for cfg in c["bot_configs"].values():
            cfg["server"].pop("shutdown_grace_seconds")
        c["compose"]["services"]["bot-server"]["stop_grace_period"] = "25s"
        c["containers_conf"]["engine"]["stop_timeout"] = 25

    def stop_timeouts_disagree(c):
        c["compose"]["services"]["bot-server"]["stop_grace_period"] = "1m"

    def no_stop_grace_period(c):
        c["compose"]["services"]["bot-server"].pop("stop_grace_period")

    return [port_without_address, default_password, anonymous_on, lifecycle, jaeger_1, unwired_pipeline,
            query_reads_other_store, hard_coded_job, metric_without_job, fixed_datasource, missing_runbook,
            dead_anchor, inline_webhook, no_alerting, grace_over_stop_timeout, default_grace_over_stop_timeout,
            stop_timeouts_disagree, no_stop_grace_period]


def main():
    c = load()
    errors = run(c)
    if "--self-test" in sys.argv[1:]:
        if errors:
            print("\n".join(f"  - {e}" for e in errors), file=sys.stderr)
            sys.exit("FAIL: the files as they are do not pass; the self-test needs a clean start")
        missed = []
        for fault in faults():
            mutated = copy.deepcopy(c)
            fault(mutated)
            found = run(mutated)
            print(f"  {'caught' if found else 'MISSED'}  {fault.__name__}: {found[0] if found else ''}")
            if not found:
                missed.append(fault.__name__)
        if missed:
            sys.exit(f"FAIL: faults not caught: {', '.join(missed)}")
        print(f"ok: all {len(faults())} faults caught")
        return
    if errors:
        print("\n".join(f"  - {e}" for e in errors), file=sys.stderr)
        sys.exit(f"FAIL: {len(errors)} problem(s) in the stack's configuration")
    n_dash = len(c["dashboards"])
    print(f"ok: compose ports on {BIND}, no default secrets, Grafana password from a secret file, anonymous off;"
          f" jaeger/config.yaml wired; {n_dash} dashboards use $job and ${{DS_...}};"
          f" every alert has a runbook_url to docs/TROUBLESHOOTING.md; Alertmanager Discord from a secret file;"
          f" the bot-server's shutdown budget fits its stop timeout")


if __name__ == "__main__":
    main()
