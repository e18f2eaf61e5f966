"""The dashboards and alert rules use only metric names the binaries export
(tests/dashboards/check_metrics.py against the real ferrite, ferrite-proxy,
ferrite-migrate and a real Redis Cluster), plus unit checks of the checker itself.

FERRITE_DASHBOARDS_SKIP=migrate or =proxy,migrate skips those binaries' part of
the live check (for branches without them); unset = strict."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CHECK = os.path.join(ROOT, "tests", "dashboards", "check_metrics.py")


def load_checker():
    spec = importlib.util.spec_from_file_location("check_metrics", CHECK)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_check(*args, env=None):
    return subprocess.run([sys.executable, CHECK, "--root", ROOT, *args], capture_output=True, text=True,
                          timeout=400, env=env)


def test_every_dashboard_metric_is_exported():
    r = run_check()
    print(r.stdout)
    print(r.stderr, file=sys.stderr)
    assert r.returncode == 0, f"dashboard check failed:\n{r.stdout}\n{r.stderr}"
    assert "OK: every metric name used by the dashboards and alert rules is exported" in r.stdout


def test_check_fails_on_a_name_no_binary_exports(tmp_path):
    d = tmp_path / "dashboards"
    shutil.copytree(os.path.join(ROOT, "dashboards"), d)
    with open(d / "ferrite-store.json") as f:
        doc = json.load(f)
    doc["panels"][1]["targets"][0]["expr"] = "rate(ferrite_no_such_metric_total[5m])"
    with open(d / "ferrite-store.json", "w") as f:
        json.dump(doc, f)
    env = dict(os.environ, FERRITE_DASHBOARDS_SKIP="proxy,migrate")
    r = run_check("--dashboards", str(d), env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "ferrite_no_such_metric_total" in r.stderr


def test_check_fails_on_a_foreign_metric_name(tmp_path):
    d = tmp_path / "dashboards"
    shutil.copytree(os.path.join(ROOT, "dashboards"), d)
    with open(d / "alerts.yml", "a") as f:
        f.write("      - alert: Foreign\n        expr: node_load1 > 4\n        labels:\n          severity: info\n"
                "        annotations:\n          summary: x\n")
    env = dict(os.environ, FERRITE_DASHBOARDS_SKIP="proxy,migrate")
    r = run_check("--dashboards", str(d), env=env)
    assert r.returncode == 1 and "node_load1" in r.stderr, r.stdout + r.stderr


def test_metric_name_extraction():
    c = load_checker()
    assert c.metric_names('rate(a_total{x="b(c)", y=~"$v"}[$__rate_interval] offset 1h) * 1e7') == {"a_total"}
    assert c.metric_names("histogram_quantile(0.99, sum by (le, backend) (rate(h_bucket[5m])))") == {"h_bucket"}
    assert c.metric_names("a and on(instance) group_left(z) b or c unless bool_m") == {"a", "b", "c", "bool_m"}
    assert c.metric_names("time() - ts_seconds > 3600") == {"ts_seconds"}
    assert c.metric_names('max(x) != min(y)') == {"x", "y"}


def test_alert_rules_structure_without_pyyaml(monkeypatch):
    c = load_checker()
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml -> ImportError
    exprs = c.load_rules(os.path.join(ROOT, "dashboards"))
    assert len(exprs) >= 10
    with pytest.raises(c.CheckError):
        c.mini_yaml("groups:\n  - name: a\n    rules:\n      - alert: X\n       expr: up\n")


def test_builtin_parser_matches_pyyaml():
    yaml = pytest.importorskip("yaml")
    c = load_checker()
    with open(os.path.join(ROOT, "dashboards", "alerts.yml")) as f:
        text = f.read()
    assert c.mini_yaml(text) == yaml.safe_load(text)


def test_dashboards_are_generated_output():
    """dashboards/*.json are what dashboards/generate.py writes (edit the generator, not the JSON)."""
    spec = importlib.util.spec_from_file_location("generate", os.path.join(ROOT, "dashboards", "generate.py"))
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for name, fn in [("ferrite-store.json", gen.store), ("ferrite-proxy.json", gen.proxy),
                     ("ferrite-migrate.json", gen.migrate)]:
        with open(os.path.join(ROOT, "dashboards", name)) as f:
            assert json.load(f) == json.loads(json.dumps(fn().json())), f"{name} differs from generate.py"


def test_rules_and_queries_without_promtool(monkeypatch, capsys):
    c = load_checker()
    real_which = shutil.which
    monkeypatch.setattr(c.shutil, "which", lambda name: None if name == "promtool" else real_which(name))
    d = os.path.join(ROOT, "dashboards")
    c.promtool_check_dashboards(c.dashboard_exprs(d))
    assert len(c.load_rules(d)) >= 10
    assert "promtool not on PATH" in capsys.readouterr().out


def test_promtool_rejects_a_broken_query(tmp_path):
    c = load_checker()
    if not shutil.which("promtool"):
        pytest.skip("promtool not installed (Debian package prometheus); the suite does not install it")
    with pytest.raises(c.CheckError):
        c.promtool_check_dashboards([("x / y", "sum(rate(ferrite_uptime_seconds[5m])")])


def test_dashboard_structure():
    """Provisioning-ready: unique uid, DS_PROMETHEUS input and variable, every panel and query on it, panels
    inside the 24-column grid with unique ids."""
    uids = set()
    for name in ("ferrite-store.json", "ferrite-proxy.json", "ferrite-migrate.json"):
        with open(os.path.join(ROOT, "dashboards", name)) as f:
            doc = json.load(f)
        assert doc["uid"] not in uids
        uids.add(doc["uid"])
        assert [i["name"] for i in doc["__inputs"]] == ["DS_PROMETHEUS"]
        variables = {v["name"]: v for v in doc["templating"]["list"]}
        assert variables["DS_PROMETHEUS"]["type"] == "datasource"
        assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
        ids = set()
        for p in doc["panels"]:
            assert p["id"] not in ids, f"{name}: duplicate panel id {p['id']}"
            ids.add(p["id"])
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, f"{name}: {p['title']} off the grid"
            if p["type"] == "row":
                continue
            assert p["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, p["title"]
            assert p["targets"], p["title"]
            for t in p["targets"]:
                assert t["datasource"]["uid"] == "${DS_PROMETHEUS}" and t["expr"].strip(), p["title"]
            assert p.get("description"), f"{name}: {p['title']} has no description"
