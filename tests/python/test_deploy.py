"""The deployment files checked by what runs here (no Docker engine runs on these machines, so
`docker build` and `docker compose up` cannot): hadolint on the Dockerfile; promtool on the
Prometheus config and alert rules (with the rules' unit tests); Debian's Prometheus scraping a
real server with the shipped scrape config, every series the dashboard and the alerts use
present with sane values; the Compose file and the Kubernetes manifests parse, and every flag and
XQ_* variable they set is one the binary accepts with the values they give; install.sh's bundle
(the image's runtime stage) runs on its own libraries.
"""

import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

yaml = pytest.importorskip("yaml")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from locations import REPO  # noqa: E402
from make_test_model import make_test_model  # noqa: E402
from server_process import BINARY, BUILD, Server  # noqa: E402

DEPLOY = REPO / "deploy"
PROM_DIR = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "xquant-server.json"
needs_binary = pytest.mark.skipif(
    not BINARY.exists(), reason=f"{BINARY} not built (ninja -C {BUILD} xquant-server)")


def tool(name):
    """A checker bootstrap.sh installs (apt or the venv's pip); skip only where it is absent."""
    path = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if not path:
        pytest.skip(f"{name} is not installed (scripts/bootstrap.sh installs it)")
    return path


def run(*cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120, **kw)


def test_hadolint_dockerfile():
    r = run(tool("hadolint"), REPO / "Dockerfile")
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_config_rules_and_rule_tests():
    promtool = tool("promtool")
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"],
                 ["test", "rules", "alerts_test.yml"]):
        r = run(promtool, *args, cwd=PROM_DIR)
        assert r.returncode == 0, f"promtool {' '.join(args)}:\n{r.stdout}{r.stderr}"


# --- the expressions the dashboard and the alerts evaluate -----------------------------------

def dashboard_exprs():
    dash = json.loads(DASHBOARD.read_text())
    return {f"{p['title']} / {t['refId']}": t["expr"] for p in dash["panels"] for t in p["targets"]}


def alert_exprs():
    rules = yaml.safe_load((PROM_DIR / "alerts.yml").read_text())
    return {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}


def metric_names(expr):
    return set(re.findall(r"\b(xquant:[a-z0-9_]+|up)\b(?!\s*\()", expr))


def test_dashboard_panels_cover_the_issue_and_use_the_provisioned_datasource():
    dash = json.loads(DASHBOARD.read_text())
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uids = {d["uid"] for d in ds["datasources"]}
    for p in dash["panels"]:
        assert p["datasource"]["uid"] in uids, p["title"]
    used = set().union(*map(metric_names, dashboard_exprs().values()))
    for m in ["num_requests_running", "num_requests_waiting", "cache_usage_perc",
              "cache_blocks", "cache_blocks_free", "cache_bytes_per_token",
              "cache_compression_ratio", "time_to_first_token_seconds_bucket",
              "time_per_output_token_seconds_bucket", "e2e_request_latency_seconds_bucket",
              "prompt_tokens_total", "generation_tokens_total", "num_preemptions_total",
              "request_success_total"]:
        assert "xquant:" + m in used, m


# --- a real scrape ---------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    """A server on a tiny model, Prometheus scraping it every second with the shipped config
    (targets and intervals changed, nothing else), after a few requests."""
    if not BINARY.exists():
        pytest.skip(f"{BINARY} not built")
    prometheus = tool("prometheus")
    tmp = tmp_path_factory.mktemp("scrape")
    model = make_test_model(tmp / "tiny", max_pos=256)
    server = Server(model, tmp / "server.log", "--cache", "xquant", "--cache-bits", "4",
                    "--served-model-name", "tiny")
    cfg = yaml.safe_load((PROM_DIR / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    cfg["rule_files"] = [str(PROM_DIR / f) for f in cfg["rule_files"]]
    job = next(j for j in cfg["scrape_configs"] if j["job_name"] == "xquant")
    job["static_configs"] = [{"targets": [server.url.removeprefix("http://")]}]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    prom = subprocess.Popen(
        [prometheus, f"--config.file={tmp / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=(tmp / "prometheus.log").open("w"), stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if requests.get(api + "/-/ready", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert prom.poll() is None, (tmp / "prometheus.log").read_text()
            time.sleep(0.1)
        def query(q):
            r = requests.get(api + "/api/v1/query", params={"query": q}, timeout=10).json()
            assert r["status"] == "success", (q, r)
            return r["data"]["result"]
        # A first scrape before the requests: rates then see the counters rise.
        deadline = time.time() + 30
        while not query("up{job='xquant'} == 1") and time.time() < deadline:
            time.sleep(0.2)
        for i in range(6):
            r = requests.post(server.url + "/v1/completions", json={
                "model": "tiny", "prompt": f"the cat {i}", "max_tokens": 12, "temperature": 0,
                "ignore_eos": True, "stream": i % 2 == 1})
            assert r.status_code == 200, r.text
        deadline = time.time() + 60
        while time.time() < deadline:
            done = query("xquant:request_success_total{finished_reason='length'}")
            if done and float(done[0]["value"][1]) >= 6:
                break
            time.sleep(0.5)
        time.sleep(3)
        yield query, api
    finally:
        prom.terminate()
        prom.wait(timeout=30)
        server.stop()


def value(result):
    assert result, "no series"
    return float(result[0]["value"][1])


@needs_binary
def test_every_series_the_dashboard_and_alerts_use_is_scraped(scraped):
    query, _ = scraped
    names = set().union(*map(metric_names, [*dashboard_exprs().values(), *alert_exprs().values()]))
    missing = [n for n in sorted(names) if not query(n if n == "up" else f"{{__name__='{n}'}}")]
    assert not missing, f"not in Prometheus: {missing}"


@needs_binary
def test_scraped_values_are_sane(scraped):
    query, _ = scraped
    assert value(query("up{job='xquant'}")) == 1
    assert value(query("xquant:generation_tokens_total")) >= 6 * 12
    assert value(query("xquant:prompt_tokens_total")) > 0
    assert value(query("xquant:request_success_total{finished_reason='length'}")) >= 6
    assert value(query("xquant:cache_blocks")) > 0
    assert 0 <= value(query("xquant:cache_usage_perc")) <= 1
    assert value(query("xquant:cache_bytes_per_token")) > 0
    assert value(query("xquant:cache_compression_ratio")) > 1  # 4-bit X against fp16 K/V
    assert value(query("xquant:time_to_first_token_seconds_count")) >= 6
    assert value(query("xquant:num_requests_running")) == 0


@needs_binary
def test_dashboard_expressions_evaluate_to_finite_values(scraped):
    query, _ = scraped
    for panel, expr in dashboard_exprs().items():
        result = query(expr.replace("$__rate_interval", "1m"))
        assert result, f"{panel}: {expr} gave no series"
        for r in result:
            assert math.isfinite(float(r["value"][1])), f"{panel}: {expr} = {r}"
    tokens = query("sum(rate(xquant:generation_tokens_total[1m]))")
    assert value(tokens) > 0


@needs_binary
def test_alert_rules_load_and_stay_quiet_on_a_healthy_server(scraped):
    query, api = scraped
    groups = requests.get(api + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(rules) == set(alert_exprs())
    for name, r in rules.items():
        assert r["health"] == "ok", (name, r.get("lastError"))
    for name, expr in alert_exprs().items():
        assert query(expr) == [], f"{name} fires on a healthy server: {expr}"


def dockerignored(path, patterns):
    """Whether Docker leaves `path` (relative to the context) out: a pattern matching the path or
    one of its folders, the last match winning (! re-includes)."""
    def regex(p):
        p = p.strip("/")
        out = re.escape(p).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*").replace(
            r"\?", "[^/]")
        return re.compile(out + "$")
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for p in patterns:
        negate = p.startswith("!")
        r = regex(p.lstrip("!"))
        if any(r.match(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_docker_context_has_the_sources_and_no_weights_or_builds():
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    context = {f for f in tracked if not dockerignored(f, patterns)}
    dockerfile = (REPO / "Dockerfile").read_text()
    for script in set(re.findall(r"\./(scripts/[\w.-]+\.sh)", dockerfile)):
        assert script in context and os.access(REPO / script, os.X_OK), script
    for needed in ["CMakeLists.txt", "CMakePresets.json", "server/main.cpp",
                   "config/CMakeLists.txt",
                   "engine/CMakeLists.txt", "kernels/CMakeLists.txt", "scheduler/CMakeLists.txt",
                   "tools/CMakeLists.txt"]:
        assert needed in context, needed
    for left_out in ["build/release/xquant-server", "models/llama/model.safetensors",
                     "tests/data/x.gguf", ".venv/bin/python", ".git/HEAD",
                     "tests/python/__pycache__/a.pyc"]:
        assert dockerignored(left_out, patterns), left_out


# --- Compose and Kubernetes ------------------------------------------------------------------

def help_env_names():
    r = run(BINARY, "--help")
    assert r.returncode == 0, r.stderr
    return set(re.findall(r"\(Env:(XQ_[A-Z0-9_]+)\)", r.stdout))


def print_config(env=None, args=()):
    """The binary's resolved configuration for these XQ_* variables and flags (exit 0), with
    nothing else from this environment. Each variable must be one --help lists: the binary
    only warns about others, at start."""
    unknown = set(env or {}) - help_env_names()
    assert not unknown, f"not settings of xquant-server: {unknown}"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("XQ_")}
    r = run(BINARY, *args, "--print-config", env={**clean, **(env or {})})
    assert r.returncode == 0, f"{env} {args}: {r.stderr}"
    return json.loads(r.stdout)


def interpolate(text):
    """Compose's ${VAR:-default} with the defaults (nothing set)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(text))


def dockerfile_env():
    text = (REPO / "Dockerfile").read_text().replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(re.findall(r"(XQ_[A-Z_]+)=(\S+)", line)))
    return env


@needs_binary
def test_dockerfile_environment_is_accepted():
    env = dockerfile_env()
    assert env["XQ_HOST"] == "0.0.0.0"
    cfg = print_config(env)
    assert cfg["host"] == "0.0.0.0" and cfg["port"] == 8000
    assert re.search(r'^EXPOSE 8000$', (REPO / "Dockerfile").read_text(), re.M)


@needs_binary
def test_compose_parses_and_its_settings_are_accepted():
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    xq = compose["services"]["xquant"]
    env = {k: interpolate(v) for k, v in xq["environment"].items()}
    assert all(k.startswith("XQ_") for k in env)
    cfg = print_config({**dockerfile_env(), **env})
    assert cfg["cache"] == env["XQ_CACHE"] and cfg["log-format"] == "json"
    assert str(cfg["cache-bits"]) == env["XQ_CACHE_BITS"]
    grace = float(env["XQ_SHUTDOWN_GRACE"])
    assert float(xq["stop_grace_period"].rstrip("s")) > grace
    assert xq["ports"] == [f"{cfg['port']}:{cfg['port']}"]
    assert xq["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    for service in ("prometheus", "grafana"):
        for volume in compose["services"][service]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DEPLOY / source).exists(), f"{service}: {source} missing"


def k8s_docs():
    docs = []
    for f in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(f.read_text()) if d]
    return {d["kind"]: d for d in docs}


@needs_binary
def test_k8s_manifests_parse_and_agree_with_the_binary():
    docs = k8s_docs()
    assert {"Deployment", "Service", "ServiceMonitor", "HorizontalPodAutoscaler",
            "PersistentVolumeClaim", "Kustomization"} <= set(docs)
    pod = docs["Deployment"]["spec"]["template"]
    c = pod["spec"]["containers"][0]
    env = {e["name"]: e.get("value", "secret") for e in c["env"]}
    cfg = print_config({**dockerfile_env(), **env}, c.get("args", []))
    port = next(p for p in c["ports"] if p["name"] == "http")["containerPort"]
    assert port == cfg["port"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
    pre_stop = int(c["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["spec"]["terminationGracePeriodSeconds"] > cfg["shutdown-grace"] + pre_stop
    notes = pod["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true" and int(notes["prometheus.io/port"]) == port
    assert notes["prometheus.io/path"] == "/metrics"
    svc_ports = {p["name"] for p in docs["Service"]["spec"]["ports"]}
    assert docs["ServiceMonitor"]["spec"]["endpoints"][0]["port"] in svc_ports
    labels = pod["metadata"]["labels"]
    for selector in (docs["Service"]["spec"]["selector"],
                     docs["ServiceMonitor"]["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == \
        docs["Deployment"]["metadata"]["name"]
    volume = pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]
    assert volume == docs["PersistentVolumeClaim"]["metadata"]["name"]
    listed = set(docs["Kustomization"]["resources"])
    assert listed == {f.name for f in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}


@needs_binary
def test_hpa_metric_is_a_series_the_server_exports(scraped):
    query, _ = scraped
    hpa = k8s_docs()["HorizontalPodAutoscaler"]
    adapter_name = hpa["spec"]["metrics"][0]["pods"]["metric"]["name"]
    # prometheus-adapter serves xquant:num_requests_waiting as xquant_num_requests_waiting.
    series = adapter_name.replace("xquant_", "xquant:", 1)
    assert series in (DEPLOY / "k8s" / "hpa.yaml").read_text()
    assert query(f"{{__name__='{series}'}}")


def test_kustomize_builds_when_kubectl_is_here():
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed (optional: the YAML is checked above without it)")
    r = run(kubectl, "kustomize", DEPLOY / "k8s")
    assert r.returncode == 0, r.stderr
    assert "kind: Deployment" in r.stdout


# --- the image's runtime stage ---------------------------------------------------------------

@needs_binary
def test_install_bundle_runs_on_its_own_libraries(tmp_path):
    r = run(REPO / "scripts" / "install.sh", tmp_path / "opt", BUILD)
    assert r.returncode == 0, r.stderr
    server = tmp_path / "opt" / "bin" / "xquant-server"
    lib = tmp_path / "opt" / "lib"
    env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": str(lib)}
    ldd = run("ldd", server, env=env).stdout
    glibc = re.compile(r"^((libc|libm|libpthread|libdl|librt|libresolv)\.so|ld-linux|linux-vdso)")
    # The CUDA toolkit's libraries (cuBLAS, cuSOLVER and what they load) come from the CUDA
    # runtime image, as install.sh says.
    cuda = re.compile(r"^lib(cuda|cudart|cublas|cublasLt|cusolver|cusparse|nvJitLink|nvidia)")
    for line in ldd.splitlines():
        name = Path(line.split()[0]).name
        if glibc.match(name) or (cuda.match(name) and "/cuda" in line):
            continue
        assert str(lib) in line, f"{name} is not taken from the bundle: {line}"
    assert run(server, "--help", env=env).returncode == 0
