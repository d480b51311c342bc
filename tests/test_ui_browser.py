"""The verdict inside MLflow's own UI, seen by a real browser.

A store built by the demo's steps (import-history of the seed, one tiny CPU training, compare-runs
--tag-runs --log-report, promote), served by a real `mlflow server` on 127.0.0.1, opened in headless
Chromium (Debian's `chromium`; installed with apt-get when absent) through the links the commands
printed. Screenshots are kept under the test's temporary folder.

MLflow 3.17's UI takes its workflow from the route's `workflowType`, else the browser's localStorage, else
GenAI. The toggle's two labels ("GenAI", "Model training") are on the page in both modes and which one is
selected is only a generated CSS class, so the mode is read from the sidebar (`mode_of`). Each mode check has a
control: the same route without the printed link's parameters, in a fresh profile, must read as GenAI.
"""

from __future__ import annotations

import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import pytest
from helpers import ROOT, Server, chromium, cli_in_process, run_cli, smoke_args

from sai_mlflow import keys as K
from sai_mlflow import promotion

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
SEED_VERDICTS = {"b128-cache-ram": "rejected", "b128": "rejected", "b96": "recommended"}


class Rows(HTMLParser):
    """Every table row of a page as a list of cell texts."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._row: list[str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def rows_of(dom: str) -> dict[str, list[str]]:
    p = Rows()
    p.feed(dom)
    return {r[0]: r[1:] for r in p.rows if r}


def mode_of(dom: str) -> str:
    """The workflow the UI is in, from its sidebar: "Model registry" only in model training, "AI Gateway" only in
    GenAI (measured on MLflow 3.17.2)."""
    ml, genai = "Model registry" in dom, "AI Gateway" in dom
    return "machine_learning" if ml and not genai else "genai" if genai and not ml else "unknown"


def split_link(link: str) -> tuple[str, str, list, list]:
    """A printed link as (base, route, the route's own parameters, the rest: the view parameters it adds)."""
    base, fragment = link.split("/#/", 1)
    route, _, query = fragment.partition("?")
    params = parse_qsl(query)
    own = [(k, v) for k, v in params if k in ("runs", "experiments")]
    return base, route, own, [p for p in params if p not in own]


class Browser:
    def __init__(self, exe: str, shots: Path) -> None:
        self.exe, self.shots, self.n = exe, shots, 0
        shots.mkdir(parents=True, exist_ok=True)

    def _run(self, url: str, budget_ms: int, *what: str) -> subprocess.CompletedProcess:
        self.n += 1
        profile = self.shots / f"profile-{self.n}"  # a fresh profile per page: no state carried over
        return subprocess.run([self.exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1600,1400",
                               f"--virtual-time-budget={budget_ms}", *what, url],
                              capture_output=True, text=True, timeout=180)

    def open(self, url: str, name: str, ready) -> str:
        """The page's DOM once `ready(dom)` holds (the UI fetches its data after loading), and a screenshot."""
        dom = ""
        for budget in (15000, 30000, 60000):
            dom = self._run(url, budget, "--dump-dom").stdout
            if ready(dom):
                break
        shot = self.shots / f"{name}.png"
        self._run(url, budget, f"--screenshot={shot}")
        assert shot.is_file() and shot.stat().st_size > 10_000, shot
        return dom


@pytest.fixture(scope="module")
def ui(tmp_path_factory, synthetic_data):
    exe = chromium()
    tmp = tmp_path_factory.mktemp("ui")
    server = Server(tmp)  # its port is known now: the commands print links to it
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    env = {"SAI_MLFLOW_UI_URL": server.uri, "YOLO_CONFIG_DIR": str(tmp / "ultralytics")}

    def cli(*args, timeout=300, run=cli_in_process):
        """The demo's commands in this process (the links they print are what is tested, not the process); the
        training in its own, as a user runs it."""
        proc = run(*args, "--tracking-uri", uri, cwd=tmp, env=env, timeout=timeout)
        assert proc.returncode in (0, 3), proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc

    imported = cli("import-history", str(ROOT / "configs" / "history" / "seed_2024-08.yaml"))
    assert imported.stdout.count(f"{server.uri}/#/experiments/") == 3
    trained = cli(*smoke_args(tmp, synthetic_data, "--set", "epochs=1", "--run-name", "cpu-b8"), run=run_cli)
    run_link = next(w for w in trained.stderr.split() if w.startswith(server.uri) and "/artifacts/" not in w)
    run_id = run_link.split("/runs/")[1].split("?")[0]
    verdict = json.loads(cli("compare-runs", "--experiment", "sai-net-stage1", "--format", "json",
                             "--tag-runs", "--log-report").stdout)
    promoted = cli("promote", run_id, "--model", "sai-net-detector", "--alias", "champion")
    version_link = next(w for w in promoted.stdout.split() if w.startswith(f"{server.uri}/#/models/"))
    server.start()
    yield {"browser": Browser(exe, tmp / "screenshots"), "links": verdict["links"], "run_link": run_link,
           "run_id": run_id, "version_link": version_link, "uri": uri, "verdict": verdict, "tmp": tmp,
           "promote_out": promoted.stdout}
    server.kill()


def test_compare_link_opens_model_training_with_the_verdict_of_the_three_seed_runs(ui):
    browser, link = ui["browser"], ui["links"]["compare"]
    dom = browser.open(link, "compare", lambda d: "sai.verdict" in d)
    assert mode_of(dom) == "machine_learning", "the printed compare link opens MLflow's UI in GenAI mode"
    rows = rows_of(dom)
    assert dict(zip(rows["Run Name:"], rows[K.TAG_VERDICT])) == SEED_VERDICTS
    # Control: the same route without the link's view parameters, in a fresh profile, is GenAI. (The compare
    # table itself lists the runs in both modes; the experiment page is where the modes differ: next test.)
    base, route, own, _ = split_link(link)
    plain = browser.open(f"{base}/#/{route}?{urlencode(own)}", "compare_genai_control",
                         lambda d: all(name in d for name in SEED_VERDICTS))
    assert mode_of(plain) == "genai"


def test_the_links_mode_lists_the_judged_runs_not_traces_on_their_experiment_page(ui):
    """The compare page's breadcrumb leads to the runs' experiment: with the printed link's view parameters it is
    the runs table holding the judged runs; without them (MLflow's default) it is GenAI's overview of traces."""
    browser = ui["browser"]
    base, _, own, view = split_link(ui["links"]["compare"])
    (experiment,) = json.loads(dict(own)["experiments"])
    dom = browser.open(f"{base}/#/experiments/{experiment}?{urlencode(view)}", "experiment_runs",
                       lambda d: all(name in d for name in SEED_VERDICTS))
    assert mode_of(dom) == "machine_learning", "the link's parameters open the experiment in GenAI mode"
    assert f"<title>Runs - Experiment {experiment}" in dom and "Run Name" in dom
    assert all(name in dom for name in SEED_VERDICTS), "the judged runs are not listed"
    plain = browser.open(f"{base}/#/experiments/{experiment}", "experiment_genai_control",
                         lambda d: "sai-net-stage1" in d and "AI Gateway" in d)
    assert mode_of(plain) == "genai" and f"<title>Overview - Experiment {experiment}" in plain
    assert not any(name in plain for name in SEED_VERDICTS)  # traces, no runs: the control tells the modes apart


def test_the_recommended_run_says_so_on_its_page(ui):
    rec = ui["verdict"]["recommended"]["run_id"]
    assert ui["links"]["recommended"] == ui["links"]["runs"][rec]
    dom = ui["browser"].open(ui["links"]["recommended"], "recommended_run", lambda d: "compare-runs verdict" in d)
    assert "compare-runs verdict:" in dom and "Recommended: batch 96" in dom
    assert "Replay" in dom  # the replay's own description is kept below the verdict
    report = ui["browser"].open(ui["links"]["decision_run"], "decision_run", lambda d: "Judged runs" in d)
    assert "decision: batch 96 recommended" in report and all(name in report for name in SEED_VERDICTS)


def test_model_version_page_shows_champion_and_the_gate_table(ui):
    dom = ui["browser"].open(ui["version_link"], "model_version", lambda d: "run_finished" in d)
    assert "champion" in dom
    rows = rows_of(dom)
    assert rows["gate"] == ["value", "threshold", "result", "note"]
    for gate in promotion.GATES:
        assert rows[gate][2] == "pass", (gate, rows[gate])
    assert "best mAP50: candidate" in ui["promote_out"]


def test_run_page_artifacts_hold_the_summary_report_and_plot(ui):
    url = ui["run_link"].replace("?", f"/artifacts/{K.ARTIFACT_SUMMARY_MD}?")
    dom = ui["browser"].open(url, "run_artifacts", lambda d: K.ARTIFACT_RUN_PLOT in d and "steady speed" in d)
    for name in (K.ARTIFACT_SUMMARY_MD, K.ARTIFACT_RUN_PLOT, K.ARTIFACT_MEMORY_TIMELINE):
        assert name in dom, name
    assert "steady speed" in dom and "projected time for all planned epochs" in dom  # the markdown, rendered


def test_system_metrics_and_source_tags_are_there_for_the_ui(ui):
    from mlflow.tracking import MlflowClient

    run = MlflowClient(ui["uri"]).get_run(ui["run_id"])
    assert any(k.startswith(K.SYSTEM_METRICS_PREFIX + "cpu_utilization") for k in run.data.metrics)
    assert {K.MEMORY_TOTAL_GIB, K.MEMORY_LIMIT_GIB} <= set(run.data.metrics)
    assert run.data.tags.get("mlflow.user") and run.data.tags.get("mlflow.source.name")

