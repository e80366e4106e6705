#!/usr/bin/env python3
"""Structural checks of flowgate's deployment files (docker/), which no container engine on
the development machines can run: the things that are easy to get wrong by editing one
file and not another.

    check_deploy.py [--root DIR] [--metrics-file FILE] [--metric-names-rs FILE] [NAME ...]

Metric names known to exist (every expression of the Grafana dashboard and the alert rules
may use only these) are the union of:
  NAME ...            names given as arguments (e.g. scraped from a live /metrics);
  --metrics-file F    the names in a Prometheus text exposition (`curl -s HOST:9898/metrics`);
  --metric-names-rs F the constants of a metric_names.rs;
and when none of these is given, the constants of crates/flowgate-core/src/metric_names.rs.
A histogram's `_bucket`, `_sum` and `_count` series count as known when its base name is.
A live /metrics lists only the series recorded so far (a counter that never moved, such as
flowgate_records_failed_total on clean input, is absent), so a check against a live scrape
alone needs a run that touched every metric the dashboard and the rules use.

Checked:
  docker/compose.yaml          flowgate service read-only, non-root, no capabilities, a named
                               volume on the checkpoint directory, config mounted read-only,
                               stop grace period > drain timeout, [api] port published;
                               simulate writes to an azure_blob source of the demo config;
                               the demo config's syslog target is the rsyslog service on the
                               port docker/demo/rsyslog.conf listens on; bind mounts exist
  docker/demo/prometheus.yml   scrapes flowgate at the [api] port, loads the alert rules
  docker/prometheus/flowgate-alerts.yaml
                               every rule has a severity and a summary; known metric names
  docker/k8s/*.yaml            (multi-document) the flowgate container: read-only root fs,
                               non-root, no privilege escalation, capabilities dropped,
                               seccomp RuntimeDefault, probes on /healthz and /readyz at the
                               port of the ConfigMap's [api] address (not loopback), the
                               grace period > drain timeout, workload identity wiring; with
                               local checkpoints: the path on a writable volume, one replica
                               with Recreate; with [checkpoints.cluster]: no PVC, no fixed
                               instance name, FLOWGATE_INSTANCE from the pod name
  docker/grafana/*.json        valid dashboard, ${DS_PROMETHEUS} datasource variable, unique
                               panel ids, known metric names in every expression
  docker/Dockerfile, docker/systemd/flowgate.service
                               non-root USER, ENTRYPOINT, EXPOSE; DynamicUser, StateDirectory,
                               TimeoutStopSec > drain timeout

Exit status: 0 all checks passed, 1 a check failed (every failure is listed), 2 bad usage
or a file that cannot be read or parsed. Needs Python 3.11+ (tomllib) and PyYAML.
"""

from __future__ import annotations

import argparse
import configparser
import json
import re
import sys
import tomllib
from pathlib import Path

try:
    import yaml
except ImportError:  # pragma: no cover
    print("check_deploy: PyYAML is required (pip install -r tests/tools/requirements.txt)", file=sys.stderr)
    sys.exit(2)

DEFAULT_DRAIN_TIMEOUT = 30.0
CHECKPOINT_DIR = "/var/lib/flowgate"
CONFIG_PATH = "/etc/flowgate/flowgate.toml"
# Series Prometheus itself adds to every target.
BUILTIN_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


class Usage(Exception):
    """A file that cannot be read or parsed: exit 2."""


class Checker:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0

    def check(self, ok: bool, where: str, message: str) -> bool:
        if ok:
            self.passed += 1
        else:
            self.failures.append(f"{where}: {message}")
        return ok


# ---------------------------------------------------------------- loading


def read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        raise Usage(f"cannot read {path}: {e}") from e


def load_yaml(path: Path):
    try:
        return yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        raise Usage(f"{path}: not valid YAML: {e}") from e


def load_yaml_all(path: Path) -> list:
    try:
        return [d for d in yaml.safe_load_all(read_text(path)) if d is not None]
    except yaml.YAMLError as e:
        raise Usage(f"{path}: not valid YAML: {e}") from e


def load_toml_text(text: str, where: str) -> dict:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise Usage(f"{where}: not valid TOML: {e}") from e


# ---------------------------------------------------------------- metric names

EXPOSITION_NAME = re.compile(r"^(?:# (?:TYPE|HELP) )?([A-Za-z_:][A-Za-z0-9_:]*)")
RUST_CONST = re.compile(r'pub\s+const\s+[A-Z0-9_]+\s*:\s*&str\s*=\s*"([A-Za-z_:][A-Za-z0-9_:]*)"')
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def names_from_exposition(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or (line.startswith("#") and not line.startswith(("# TYPE ", "# HELP "))):
            continue
        m = EXPOSITION_NAME.match(line)
        if m:
            names.add(m.group(1))
    return names


def names_from_rust(text: str) -> set[str]:
    return set(RUST_CONST.findall(text))


def is_known(name: str, known: set[str]) -> bool:
    if name in known or name in BUILTIN_METRICS:
        return True
    for suffix in HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in known:
            return True
    return False


# ---------------------------------------------------------------- PromQL

PROMQL_KEYWORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan", "start", "end",
}
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$__\w+|\$\w+|\[\[[^\]]*\]\]")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
IDENT = re.compile(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*")
LABEL_VALUES = re.compile(r"^\s*label_values\s*\((.*)\)\s*$", re.S)
NUMBER = re.compile(r"^(?:0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)$")


def promql_metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (Grafana variables allowed)."""
    m = LABEL_VALUES.match(expr)
    if m:  # label_values(label) or label_values(selector, label)
        args = m.group(1)
        if "," not in args:
            return set()
        expr = args.rsplit(",", 1)[0]
    text = STRING.sub(" ", expr)
    text = GRAFANA_VAR.sub(" ", text)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # ranges, subqueries
    text = GROUPING.sub(" ", text)
    names = set()
    for tok in IDENT.finditer(text):
        word = tok.group(0)
        rest = text[tok.end():].lstrip()
        if rest.startswith("("):  # a function or an aggregation
            continue
        if word.lower() in PROMQL_KEYWORDS or NUMBER.match(word):
            continue
        names.add(word)
    return names


def check_exprs(c: Checker, where: str, exprs: list[tuple[str, str]], known: set[str]) -> None:
    for label, expr in exprs:
        if not isinstance(expr, str) or not expr.strip():
            c.check(False, where, f"{label}: empty expression")
            continue
        if expr.count("(") != expr.count(")") or expr.count("{") != expr.count("}"):
            c.check(False, where, f"{label}: unbalanced brackets in {expr!r}")
            continue
        names = promql_metric_names(expr)
        c.check(bool(names), where, f"{label}: no metric name found in {expr!r}")
        for name in sorted(names):
            c.check(is_known(name, known), where,
                    f"{label}: metric {name!r} is not among the known metric names ({expr!r})")


# ---------------------------------------------------------------- helpers


def api_port(config: dict, where: str, c: Checker, need_wildcard: bool) -> int | None:
    address = config.get("api", {}).get("address")
    if not c.check(address is not None, where,
                   "[api] address is not set: the API (/metrics, /healthz, /readyz) is off"):
        return None
    m = re.match(r"^(\[[^\]]+\]|[^:]+):(\d+)$", str(address))
    if not c.check(bool(m), where, f"[api] address {address!r} is not host:port"):
        return None
    host, port = m.group(1).strip("[]"), int(m.group(2))
    if need_wildcard:
        c.check(host in ("0.0.0.0", "::"), where,
                f"[api] address {address!r}: in a container it must listen on 0.0.0.0 (or ::), "
                "loopback is unreachable for probes and Prometheus")
    return port


def drain_timeout(config: dict) -> float:
    return float(config.get("pipeline", {}).get("drain_timeout_secs", DEFAULT_DRAIN_TIMEOUT))


def duration_secs(value) -> float | None:
    """Compose/Go durations (`45s`, `1m30s`) or plain numbers of seconds."""
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    if re.fullmatch(r"\d+(?:\.\d+)?", value):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 0.000001}
    return sum(float(n) * scale[u] for n, u in parts)


def user_is_non_root(user) -> bool:
    if user is None:
        return False
    uid = str(user).split(":")[0]
    return uid.isdigit() and int(uid) != 0


def mounts_of(service: dict) -> list[dict]:
    """Compose volumes in long form: {type, source, target, read_only}."""
    out = []
    for v in service.get("volumes", []) or []:
        if isinstance(v, dict):
            out.append({"type": v.get("type", "volume"), "source": v.get("source"),
                        "target": v.get("target"), "read_only": bool(v.get("read_only", False))})
            continue
        parts = str(v).split(":")
        if len(parts) == 1:
            out.append({"type": "volume", "source": None, "target": parts[0], "read_only": False})
            continue
        source, target = parts[0], parts[1]
        mode = parts[2] if len(parts) > 2 else ""
        kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        out.append({"type": kind, "source": source, "target": target,
                    "read_only": "ro" in mode.split(",")})
    return out


def command_flag(command: list[str], flag: str) -> str | None:
    for i, arg in enumerate(command):
        if arg == flag and i + 1 < len(command):
            return command[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


# ---------------------------------------------------------------- compose


def check_compose(c: Checker, docker: Path) -> tuple[dict | None, int | None]:
    path = docker / "compose.yaml"
    where = str(path)
    compose = load_yaml(path)
    if not c.check(isinstance(compose, dict) and isinstance(compose.get("services"), dict),
                   where, "no services"):
        return None, None
    services = compose["services"]
    named_volumes = set((compose.get("volumes") or {}).keys())
    for name in ("azurite", "simulate", "flowgate", "rsyslog", "prometheus"):
        c.check(name in services, where, f"service {name!r} missing")

    # Every bind mount's source exists (relative to the compose file).
    for sname, svc in services.items():
        for m in mounts_of(svc):
            if m["type"] == "bind":
                c.check((docker / m["source"]).exists(), where,
                        f"services.{sname}: bind mount source {m['source']} does not exist")
            elif m["source"]:
                c.check(m["source"] in named_volumes, where,
                        f"services.{sname}: volume {m['source']!r} not declared under volumes:")
        build = svc.get("build")
        if isinstance(build, dict) and "dockerfile" in build:
            ctx = docker / build.get("context", ".")
            c.check((ctx / build["dockerfile"]).exists(), where,
                    f"services.{sname}: dockerfile {build['dockerfile']} not found in context {ctx}")

    fg = services.get("flowgate")
    if not fg:
        return None, None
    w = f"{where}: services.flowgate"
    c.check(fg.get("read_only") is True, w, "read_only: true is required")
    c.check(user_is_non_root(fg.get("user")), w, f"user must be a non-root uid, got {fg.get('user')!r}")
    c.check("ALL" in (fg.get("cap_drop") or []), w, "cap_drop: [ALL] is required")
    c.check(any("no-new-privileges" in str(o) for o in fg.get("security_opt") or []), w,
            "security_opt no-new-privileges:true is required")
    c.check(not fg.get("privileged"), w, "must not be privileged")
    c.check(not fg.get("tmpfs"), w, "needs no tmpfs: flowgate writes only its checkpoint directory")
    mounts = mounts_of(fg)
    state = [m for m in mounts if m["target"] == CHECKPOINT_DIR]
    c.check(len(state) == 1 and state[0]["type"] == "volume" and state[0]["source"]
            and not state[0]["read_only"], w,
            f"a named, writable volume must be mounted at {CHECKPOINT_DIR}")
    conf = [m for m in mounts if m["target"] == CONFIG_PATH]
    if not c.check(len(conf) == 1 and conf[0]["type"] == "bind" and conf[0]["read_only"], w,
                   f"the config must be bind-mounted read-only at {CONFIG_PATH}"):
        return None, None
    command = [str(a) for a in fg.get("command") or []]
    c.check(command[:1] == ["run"] and command_flag(command, "--config") == CONFIG_PATH, w,
            f"command must be run --config {CONFIG_PATH}, got {command}")
    config_path = docker / conf[0]["source"]
    if not config_path.exists():
        return None, None
    config = load_toml_text(read_text(config_path), str(config_path))
    cw = str(config_path)
    port = api_port(config, cw, c, need_wildcard=True)
    grace = duration_secs(fg.get("stop_grace_period", "10s"))
    c.check(grace is not None and grace > drain_timeout(config), w,
            f"stop_grace_period {fg.get('stop_grace_period')!r} must exceed "
            f"pipeline.drain_timeout_secs ({drain_timeout(config)})")
    if port is not None:
        published = [str(p) for p in fg.get("ports") or []]
        c.check(any(p.split(":")[-1].split("/")[0] == str(port) for p in published), w,
                f"[api] port {port} is not published (ports: {published})")
    cp = str(config.get("checkpoints", {}).get("path", ""))
    c.check(under(cp, CHECKPOINT_DIR), cw,
            f"checkpoints.path {cp!r} must be under {CHECKPOINT_DIR} (the only writable path)")

    # simulate: same image, same config, an azure_blob source that points at azurite.
    sim = services.get("simulate")
    if sim:
        sw = f"{where}: services.simulate"
        scmd = [str(a) for a in sim.get("command") or []]
        c.check(scmd[:1] == ["simulate"], sw, "command must start with simulate")
        c.check(sim.get("image") == fg.get("image"), sw, "must use the flowgate image")
        c.check(sim.get("read_only") is True and user_is_non_root(sim.get("user")), sw,
                "read_only and a non-root user, like flowgate")
        c.check(command_flag(scmd, "--config") == CONFIG_PATH, sw, f"--config must be {CONFIG_PATH}")
        source = command_flag(scmd, "--source")
        src = config.get("sources", {}).get(source or "", {})
        c.check(src.get("type") == "azure_blob", sw,
                f"--source {source!r} is not an azure_blob source of {config_path.name}")
    for sname, src in config.get("sources", {}).items():
        endpoint = src.get("endpoint", "")
        if endpoint:
            host = re.sub(r"^https?://", "", endpoint).split("/")[0].split(":")[0]
            c.check(host in services, cw, f"sources.{sname}.endpoint host {host!r} is not a compose service")

    # The syslog sink's target is the rsyslog service, on the port rsyslog.conf listens on.
    rs_conf = docker / "demo" / "rsyslog.conf"
    listen = set(re.findall(r'input\(\s*type="imtcp"[^)]*?port="(\d+)"', read_text(rs_conf), re.S))
    c.check(bool(listen), str(rs_conf), "no imtcp input with a port")
    for sname, sink in config.get("sinks", {}).items():
        if sink.get("type") != "syslog":
            continue
        for target in sink.get("targets", []):
            host, _, tport = target.rpartition(":")
            c.check(host in services, cw, f"sinks.{sname}: target host {host!r} is not a compose service")
            if host == "rsyslog":
                c.check(sink.get("mode", "udp") in ("tcp", "tls") and tport in listen, cw,
                        f"sinks.{sname}: target {target} does not match rsyslog.conf's imtcp ports {sorted(listen)}")
    return config, port


def check_prometheus_config(c: Checker, docker: Path, api: int | None, compose: dict | None) -> None:
    path = docker / "demo" / "prometheus.yml"
    where = str(path)
    prom = load_yaml(path)
    if not c.check(isinstance(prom, dict), where, "not a mapping"):
        return
    targets = [t for sc in prom.get("scrape_configs", []) or []
               for st in sc.get("static_configs", []) or [] for t in st.get("targets", [])]
    c.check(any(t == f"flowgate:{api}" for t in targets), where,
            f"no scrape target flowgate:{api} (targets: {targets})")
    jobs = [sc.get("job_name") for sc in prom.get("scrape_configs", []) or []]
    c.check("flowgate" in jobs, where, "no job_name: flowgate (the FlowgateDown alert selects job=\"flowgate\")")
    rule_files = prom.get("rule_files", []) or []
    compose_prom = ((compose or {}).get("services") or {}).get("prometheus") or {}
    mounted = [m["target"] for m in mounts_of(compose_prom)
               if m["source"] and m["source"].endswith("flowgate-alerts.yaml")]
    c.check(bool(mounted) and any(Path(t).match(pattern) for t in mounted for pattern in rule_files),
            where, f"rule_files {rule_files} do not match where compose mounts the alert rules ({mounted})")


def check_alerts(c: Checker, docker: Path, known: set[str]) -> None:
    path = docker / "prometheus" / "flowgate-alerts.yaml"
    where = str(path)
    doc = load_yaml(path)
    groups = (doc or {}).get("groups") if isinstance(doc, dict) else None
    if not c.check(isinstance(groups, list) and groups, where, "no rule groups"):
        return
    alerts: dict[str, dict] = {}
    exprs = []
    for g in groups:
        for r in g.get("rules", []) or []:
            name = r.get("alert") or r.get("record")
            c.check(bool(name), where, f"a rule in group {g.get('name')!r} has no alert/record name")
            if "alert" in r:
                c.check(r["alert"] not in alerts, where, f"alert {r['alert']} defined twice")
                alerts[r["alert"]] = r
                c.check((r.get("labels") or {}).get("severity") in ("critical", "warning", "info"),
                        where, f"{name}: labels.severity must be critical, warning or info")
                c.check(bool((r.get("annotations") or {}).get("summary")), where,
                        f"{name}: annotations.summary missing")
                if "for" in r:
                    c.check(duration_secs(r["for"]) is not None, where, f"{name}: bad for: {r['for']!r}")
            exprs.append((str(name), r.get("expr")))
    check_exprs(c, where, exprs, known)
    # What each rule must watch (so that renaming a metric cannot silently empty an alert).
    required = {
        "flowgate_checkpoint_lag_seconds": "checkpoint lag",
        "flowgate_tuples_total": "no tuples while ready",
        "flowgate_sink_events_dropped_total": "sink drops",
        "flowgate_records_failed_total": "failed records",
        "flowgate_ready": "readiness",
        "flowgate_source_list_errors_total": "blob list errors",
    }
    used = set().union(*(promql_metric_names(e) for _, e in exprs if isinstance(e, str)))
    for metric, what in required.items():
        c.check(metric in used, where, f"no alert on {what} ({metric})")


# ---------------------------------------------------------------- Kubernetes


def check_k8s(c: Checker, docker: Path) -> None:
    files = sorted((docker / "k8s").glob("*.yaml"))
    if not c.check(bool(files), str(docker / "k8s"), "no manifests"):
        return
    for path in files:
        docs = load_yaml_all(path)
        where = str(path)
        by_kind: dict[str, list[dict]] = {}
        for d in docs:
            if not c.check(isinstance(d, dict) and "kind" in d and "apiVersion" in d, where,
                           "a document without kind/apiVersion"):
                continue
            by_kind.setdefault(d["kind"], []).append(d)
        deployments = by_kind.get("Deployment", [])
        c.check(bool(deployments), where, "no Deployment")
        for dep in deployments:
            check_deployment(c, f"{where}: Deployment {dep['metadata']['name']}", dep, by_kind)


def find_named(items: list[dict], name: str) -> dict | None:
    return next((i for i in items if i.get("metadata", {}).get("name") == name), None)


def check_deployment(c: Checker, where: str, dep: dict, by_kind: dict) -> None:
    spec = dep.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    pod_meta = spec.get("template", {}).get("metadata", {})
    pod_sc = pod.get("securityContext", {}) or {}
    containers = pod.get("containers", []) or []
    fg = next((x for x in containers if x.get("name") == "flowgate"), None)
    if not c.check(fg is not None, where, "no container named flowgate"):
        return
    sc = fg.get("securityContext", {}) or {}
    w = f"{where}: container flowgate"

    def effective(key):
        return sc.get(key, pod_sc.get(key))

    c.check(sc.get("readOnlyRootFilesystem") is True, w, "securityContext.readOnlyRootFilesystem: true required")
    c.check(effective("runAsNonRoot") is True, w, "runAsNonRoot: true required")
    uid = effective("runAsUser")
    c.check(uid is None or (isinstance(uid, int) and uid != 0), w, f"runAsUser must not be 0, got {uid!r}")
    c.check(sc.get("allowPrivilegeEscalation") is False, w, "allowPrivilegeEscalation: false required")
    c.check(not sc.get("privileged"), w, "must not be privileged")
    c.check("ALL" in ((sc.get("capabilities") or {}).get("drop") or []), w, "capabilities.drop: [ALL] required")
    c.check((effective("seccompProfile") or {}).get("type") == "RuntimeDefault", w,
            "seccompProfile.type: RuntimeDefault required")
    limits = (fg.get("resources") or {}).get("limits") or {}
    c.check("memory" in limits, w, "resources.limits.memory required")
    c.check("cpu" in ((fg.get("resources") or {}).get("requests") or {}), w, "resources.requests.cpu required")

    # The config: a ConfigMap volume mounted read-only where --config points.
    args = [str(a) for a in (fg.get("command") or []) + (fg.get("args") or [])]
    config_arg = command_flag(args, "--config")
    if not c.check(args[:1] == ["run"] and config_arg, w, f"args must be run --config FILE, got {args}"):
        return
    volumes = {v["name"]: v for v in pod.get("volumes", []) or []}
    mounts = fg.get("volumeMounts", []) or []
    config = None
    for m in mounts:
        vol = volumes.get(m.get("name"), {})
        if "configMap" in vol and under(config_arg, m["mountPath"]):
            c.check(m.get("readOnly") is True, w, f"config mount {m['mountPath']} must be readOnly")
            key = m.get("subPath") or config_arg[len(m["mountPath"].rstrip("/")) + 1:]
            cm = find_named(by_kind.get("ConfigMap", []), vol["configMap"]["name"])
            if c.check(cm is not None, where, f"ConfigMap {vol['configMap']['name']} not in the file") and \
                    c.check(key in (cm.get("data") or {}), where,
                            f"ConfigMap {vol['configMap']['name']} has no key {key!r} for --config {config_arg}"):
                config = load_toml_text(cm["data"][key], f"{where}: ConfigMap {cm['metadata']['name']}/{key}")
    if not c.check(config is not None, w, f"--config {config_arg} is not on a ConfigMap volume"):
        return

    # Probes at the [api] port, which must not be loopback (kubelet connects to the pod IP).
    port = api_port(config, f"{where}: ConfigMap", c, need_wildcard=True)
    named_ports = {p.get("name"): p.get("containerPort") for p in fg.get("ports", []) or []}
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = (fg.get(probe) or {}).get("httpGet") or {}
        p = get.get("port")
        p = named_ports.get(p, p) if isinstance(p, str) else p
        c.check(get.get("path") == path, w, f"{probe} must GET {path}, got {get.get('path')!r}")
        c.check(port is not None and p == port, w, f"{probe} port {get.get('port')!r} is not the [api] port {port}")
    c.check(port in named_ports.values(), w, f"containerPort {port} ([api]) not declared")
    ann = pod_meta.get("annotations", {}) or {}
    if ann.get("prometheus.io/scrape") == "true":
        c.check(str(ann.get("prometheus.io/port")) == str(port), where,
                f"prometheus.io/port {ann.get('prometheus.io/port')!r} is not the [api] port {port}")
        c.check(ann.get("prometheus.io/path", "/metrics") == "/metrics", where, "prometheus.io/path must be /metrics")

    # Workload identity: the pod label and an annotated ServiceAccount.
    uses_wi = any((s.get("azure_ad") or {}).get("method") == "workload_identity"
                  for s in config.get("sources", {}).values())
    if uses_wi:
        labels = pod_meta.get("labels", {}) or {}
        c.check(labels.get("azure.workload.identity/use") == "true", where,
                'pod label azure.workload.identity/use: "true" required for workload_identity')
        sa = find_named(by_kind.get("ServiceAccount", []), pod.get("serviceAccountName", ""))
        c.check(sa is not None and "azure.workload.identity/client-id" in
                ((sa.get("metadata") or {}).get("annotations") or {}), where,
                "serviceAccountName must name a ServiceAccount annotated azure.workload.identity/client-id")

    grace = pod.get("terminationGracePeriodSeconds", 30)
    c.check(grace > drain_timeout(config), where,
            f"terminationGracePeriodSeconds {grace} must exceed pipeline.drain_timeout_secs {drain_timeout(config)}")
    cluster = (config.get("checkpoints", {}) or {}).get("cluster")
    if cluster is not None:
        # Coordinated instances: state in the storage account, any number of replicas,
        # no volume; each pod needs its own instance name (its pod name by default).
        c.check(not [v for v in volumes.values() if "persistentVolumeClaim" in v], where,
                "a cluster keeps its state in the storage account: no PersistentVolumeClaim")
        c.check("instance" not in cluster or cluster["instance"] == "", where,
                "checkpoints.cluster.instance must not be fixed in a Deployment (all pods would share it)")
        env = {e.get("name"): e for e in fg.get("env", []) or []}
        inst = env.get("FLOWGATE_INSTANCE")
        if inst is not None:
            ref = ((inst.get("valueFrom") or {}).get("fieldRef") or {}).get("fieldPath")
            c.check(ref == "metadata.name", w, "FLOWGATE_INSTANCE must come from the pod name (fieldRef metadata.name)")
        lease = cluster.get("lease_secs", 30)
        c.check(isinstance(lease, int) and 15 <= lease <= 60, where, f"checkpoints.cluster.lease_secs {lease!r} not in [15, 60]")
        strategy = (spec.get("strategy") or {}).get("type", "RollingUpdate")
        c.check(strategy == "RollingUpdate", where, "a cluster rolls: strategy RollingUpdate")
        return

    # One instance: checkpoints on a writable volume (the root filesystem is read-only).
    cp = str(config.get("checkpoints", {}).get("path", ""))
    state = [m for m in mounts if under(cp, m["mountPath"]) and not m.get("readOnly")
             and ("persistentVolumeClaim" in volumes.get(m["name"], {}) or "emptyDir" in volumes.get(m["name"], {}))]
    c.check(bool(state), w, f"checkpoints.path {cp!r} is not on a writable PVC or emptyDir mount")
    for m in state:
        claim = volumes[m["name"]].get("persistentVolumeClaim")
        if claim:
            c.check(find_named(by_kind.get("PersistentVolumeClaim", []), claim["claimName"]) is not None,
                    where, f"PersistentVolumeClaim {claim['claimName']} not in the file")
            c.check(pod_sc.get("fsGroup") == uid or pod_sc.get("fsGroup") == effective("runAsGroup"), where,
                    "securityContext.fsGroup must match the user so the PVC is writable")
    c.check(spec.get("replicas", 1) == 1, where,
            "replicas must be 1 with local checkpoints (use [checkpoints.cluster] for more)")
    c.check((spec.get("strategy") or {}).get("type") == "Recreate", where,
            "strategy Recreate: never two pods on one checkpoint store")


# ---------------------------------------------------------------- Grafana


def check_grafana(c: Checker, docker: Path, known: set[str]) -> None:
    files = sorted((docker / "grafana").glob("*.json"))
    if not c.check(bool(files), str(docker / "grafana"), "no dashboards"):
        return
    for path in files:
        where = str(path)
        try:
            dash = json.loads(read_text(path))
        except json.JSONDecodeError as e:
            raise Usage(f"{path}: not valid JSON: {e}") from e
        c.check(isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 36, where,
                "schemaVersion must be an integer >= 36")
        c.check(bool(dash.get("uid")) and bool(dash.get("title")), where, "uid and title required")
        variables = {v.get("name"): v for v in (dash.get("templating") or {}).get("list", [])}
        ds = variables.get("DS_PROMETHEUS")
        c.check(ds is not None and ds.get("type") == "datasource" and ds.get("query") == "prometheus",
                where, "templating needs DS_PROMETHEUS of type datasource, query prometheus")
        exprs = []
        for name, v in variables.items():
            if v.get("type") == "query":
                q = v.get("query")
                q = q.get("query") if isinstance(q, dict) else q
                exprs.append((f"variable {name}", q))
                c.check(uses_ds(v.get("datasource")), where, f"variable {name}: datasource must be ${{DS_PROMETHEUS}}")
        ids = []
        panels = list(dash.get("panels") or [])
        for p in list(panels):
            panels.extend(p.get("panels") or [])  # panels of collapsed rows
        for p in panels:
            ids.append(p.get("id"))
            title = p.get("title", "?")
            g = p.get("gridPos") or {}
            c.check(all(isinstance(g.get(k), int) for k in "xywh") and g["x"] + g["w"] <= 24, where,
                    f"panel {title!r}: gridPos must fit the 24 columns")
            if p.get("type") == "row":
                continue
            c.check(uses_ds(p.get("datasource")), where, f"panel {title!r}: datasource must be ${{DS_PROMETHEUS}}")
            targets = p.get("targets") or []
            c.check(bool(targets), where, f"panel {title!r}: no queries")
            refs = [t.get("refId") for t in targets]
            c.check(len(refs) == len(set(refs)), where, f"panel {title!r}: duplicate refId")
            for t in targets:
                if "datasource" in t:
                    c.check(uses_ds(t["datasource"]), where, f"panel {title!r}: query datasource must be ${{DS_PROMETHEUS}}")
                exprs.append((f"panel {title!r}", t.get("expr")))
        c.check(len(ids) == len(set(ids)) and None not in ids, where, "panel ids must be set and unique")
        check_exprs(c, where, exprs, known)


def uses_ds(ds) -> bool:
    if isinstance(ds, dict):
        return ds.get("uid") == "${DS_PROMETHEUS}"
    return ds == "${DS_PROMETHEUS}"


# ---------------------------------------------------------------- Dockerfile, systemd


def check_dockerfile(c: Checker, docker: Path, api: int | None) -> None:
    path = docker / "Dockerfile"
    where = str(path)
    lines = []
    for line in read_text(path).replace("\\\n", " ").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            lines.append(line)
    stages = [i for i, line in enumerate(lines) if line.upper().startswith("FROM ")]
    if not c.check(len(stages) >= 2, where, "must be multi-stage"):
        return
    for i in stages:
        image = lines[i].split()[1]
        c.check(":" in image and not image.endswith(":latest"), where, f"base image {image} must be pinned")
    final = lines[stages[-1]:]
    users = [line.split(None, 1)[1] for line in final if line.upper().startswith("USER ")]
    c.check(bool(users) and user_is_non_root(users[-1]), where,
            f"the final stage must end as a non-root numeric USER, got {users}")
    c.check(any(line.startswith('ENTRYPOINT ["/usr/local/bin/flowgate"]') for line in final), where,
            'ENTRYPOINT ["/usr/local/bin/flowgate"] required')
    c.check(any(line.startswith("CMD ") and CONFIG_PATH in line for line in final), where,
            f"CMD must run with --config {CONFIG_PATH}")
    c.check(any(re.match(rf"EXPOSE\s+{api}\b", line) for line in final), where, f"EXPOSE {api} required")
    c.check(any("cargo build --release --locked" in line for line in lines), where,
            "the builder must run cargo build --release --locked")


def check_systemd(c: Checker, docker: Path) -> None:
    path = docker / "systemd" / "flowgate.service"
    where = str(path)
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive
    try:
        parser.read_string(read_text(path))
    except configparser.Error as e:
        raise Usage(f"{path}: {e}") from e
    svc = parser["Service"] if parser.has_section("Service") else {}
    expect = {"DynamicUser": "yes", "StateDirectory": "flowgate", "ConfigurationDirectory": "flowgate",
              "NoNewPrivileges": "yes", "ProtectSystem": "strict", "Restart": "on-failure"}
    for key, value in expect.items():
        c.check(svc.get(key) == value, where, f"{key}={value} required, got {svc.get(key)!r}")
    c.check(str(svc.get("ExecStart", "")).startswith(f"/usr/local/bin/flowgate run --config {CONFIG_PATH}"),
            where, "ExecStart must run /usr/local/bin/flowgate run --config " + CONFIG_PATH)
    stop = duration_secs(svc.get("TimeoutStopSec", "90s").replace(" ", ""))
    c.check(stop is not None and stop > DEFAULT_DRAIN_TIMEOUT, where,
            f"TimeoutStopSec must exceed the default drain timeout ({DEFAULT_DRAIN_TIMEOUT}s)")
    c.check(str(svc.get("CapabilityBoundingSet", "x")) == "", where, "CapabilityBoundingSet= (empty) required")


# ---------------------------------------------------------------- main


def self_test() -> None:
    cases = {
        'sum by (sink) (rate(flowgate_sink_events_sent_total{instance=~"$instance"}[$__rate_interval]))':
            {"flowgate_sink_events_sent_total"},
        "histogram_quantile(0.99, sum by (source, le) (rate(x_seconds_bucket[5m])))": {"x_seconds_bucket"},
        "a / (b + c) > 1e3 and on (instance) up == 0": {"a", "b", "c", "up"},
        "label_values(flowgate_ready, instance)": {"flowgate_ready"},
        "label_values(instance)": set(),
        'max(flowgat_typo{reason="by (x)"}) offset 5m': {"flowgat_typo"},
    }
    for expr, want in cases.items():
        got = promql_metric_names(expr)
        assert got == want, f"promql_metric_names({expr!r}) = {got}, want {want}"


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help="metric names known to exist (e.g. from a live /metrics)")
    ap.add_argument("--root", type=Path, default=here.parent.parent, help="the repository (default: this script's)")
    ap.add_argument("--metrics-file", type=Path, help="a Prometheus text exposition to take the names from")
    ap.add_argument("--metric-names-rs", type=Path, help="metric_names.rs to take the names from (the default source)")
    args = ap.parse_args(argv)
    self_test()
    try:
        known: set[str] = set()
        origins = []
        if args.names:
            known |= set(args.names)
            origins.append(f"{len(args.names)} from the command line")
        if args.metrics_file:
            found = names_from_exposition(read_text(args.metrics_file))
            if not found:
                raise Usage(f"no metric names in {args.metrics_file}")
            known |= found
            origins.append(str(args.metrics_file))
        rs = args.metric_names_rs
        if rs is None and not origins:
            rs = args.root / "crates/flowgate-core/src/metric_names.rs"
        if rs is not None:
            found = names_from_rust(read_text(rs))
            if not found:
                raise Usage(f"no metric names in {rs}")
            known |= found
            origins.append(str(rs))
        origin = ", ".join(origins)
        docker = args.root / "docker"
        c = Checker()
        _, api = check_compose(c, docker)
        compose = load_yaml(docker / "compose.yaml")
        check_prometheus_config(c, docker, api, compose)
        check_alerts(c, docker, known)
        check_k8s(c, docker)
        check_grafana(c, docker, known)
        check_dockerfile(c, docker, api)
        check_systemd(c, docker)
    except Usage as e:
        print(f"check_deploy: {e}", file=sys.stderr)
        return 2
    if c.failures:
        for f in c.failures:
            print(f"FAIL {f}", file=sys.stderr)
        print(f"check_deploy: {len(c.failures)} failed, {c.passed} passed (metric names: {origin})", file=sys.stderr)
        return 1
    print(f"check_deploy: {c.passed} passed, 0 failed (metric names: {origin})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
