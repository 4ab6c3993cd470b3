"""Leaderboards from a real MLflow store: aggregation, ranking, sections, files, errors, publishing."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Metric

from suite import schema, tracking
from suite.cli import main
from suite.errors import CorruptDataError, TrackingError
from suite.leaderboard import generate_leaderboards
from suite.leaderboard.references import default_references_path, load_references
from suite.leaderboard.svg_plot import Point, nice_ticks, pareto_front
from tests.helpers.ports import free_port

FULL = {  # every metric a finished `suite run` logs, for runs that are not about missing values
    schema.M_TOP5: 99.0,
    schema.M_SOPS: 0.5,
    schema.M_FIRING_RATE: 0.125,
    schema.M_PARAMS: 9.32,
    schema.M_SAMPLES_PER_S: 100.0,
}


@dataclass
class Store:
    uri: str
    ids: dict[str, list[str]]


def _log_run(uri, experiment, *, task, model, steps, seed, data=schema.DATA_SYNTHETIC, config_hash=None,
             metrics=None, status="FINISHED", kind="run", epochs=3):
    tags = {
        schema.TAG_KIND: kind,
        schema.TAG_TASK: task,
        schema.TAG_PROTOCOL: "default",
        schema.TAG_MODEL: model,
        schema.TAG_TIME_STEPS: steps,
        schema.TAG_SEED: seed,
    }
    if data is not None:
        tags[schema.TAG_DATA] = data
    if config_hash is not None:
        tags[schema.TAG_CONFIG_HASH] = config_hash
    run_id = tracking.create_run(uri, experiment, run_name=f"{model}-s{seed}", tags=tags, params={"epochs": epochs})
    client = MlflowClient(tracking_uri=uri)
    # Two epochs per metric: the board must use the last value, not the first.
    batch = [Metric(key, value - 5.0, 0, 0) for key, value in (metrics or {}).items()]
    batch += [Metric(key, value, 0, 1) for key, value in (metrics or {}).items()]
    if batch:
        client.log_batch(run_id, metrics=batch)
    client.set_terminated(run_id, status)
    return run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Store:
    uri = tracking.sqlite_uri(tmp_path_factory.mktemp("mlflow") / "mlflow.db")
    exp = schema.DEFAULT_EXPERIMENT
    ids: dict[str, list[str]] = {}

    def add(name, **kwargs):
        ids.setdefault(name, []).append(_log_run(uri, kwargs.pop("experiment", exp), **kwargs))

    cifar = {"task": "cifar10", "data": "real:abc123"}
    for seed, best in enumerate([90.0, 91.0, 95.0]):
        add("A", **cifar, model="spikformer-4-384", steps=4, seed=seed, config_hash="hA",
            metrics={schema.M_BEST_TOP1: best, schema.M_TOP1: best - 1, schema.M_ENERGY: 1.0, **FULL})
    for seed, best in enumerate([93.0, 94.0]):
        add("B", **cifar, model="spikformer-2-384", steps=4, seed=seed, config_hash="hB",
            metrics={schema.M_BEST_TOP1: best, schema.M_TOP1: best, schema.M_ENERGY: 2.0, **FULL})
    # Only the final top-1 and params: ranked on top1, every other figure a dash.
    add("C", **cifar, model="spikformer-4-256", steps=2, seed=0, config_hash="hC",
        metrics={schema.M_TOP1: 80.0, schema.M_PARAMS: 4.16})
    # No config-hash tag: grouped by model, T, epochs and data kind instead; ties with C.
    for seed, best in enumerate([79.0, 81.0]):
        add("D", **cifar, model="spikformer-2-256", steps=4, seed=seed,
            metrics={schema.M_BEST_TOP1: best, schema.M_ENERGY: 0.5, **FULL})
    add("S", task="cifar10", model="spikformer-1-64", steps=2, seed=0, config_hash="hS",
        metrics={schema.M_BEST_TOP1: 99.5, schema.M_ENERGY: 0.01, **FULL})
    add("U", task="cifar10", data=None, model="spikformer-1-64", steps=2, seed=0, config_hash="hU",
        metrics={schema.M_BEST_TOP1: 50.0, **FULL})
    add("F", **cifar, model="spikformer-4-384", steps=4, seed=3, config_hash="hA", status="FAILED",
        metrics={schema.M_BEST_TOP1: 100.0})
    add("R", **cifar, model="spikformer-2-384", steps=4, seed=2, config_hash="hB", status="RUNNING",
        metrics={schema.M_BEST_TOP1: 100.0})
    add("K", **cifar, model="spikformer-4-384", steps=4, seed=4, config_hash="hA", kind="trial",
        experiment="a-sweep", metrics={schema.M_BEST_TOP1: 100.0})
    add("G", task="dvs128-gesture", data="real:feed", model="spikformer-2-256", steps=16, seed=0,
        config_hash="hG", experiment="gestures", metrics={schema.M_BEST_TOP1: 97.0, schema.M_ENERGY: 3.0, **FULL})
    return Store(uri, ids)


@pytest.fixture(scope="module")
def boards_dir(store, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("boards")
    generate_leaderboards(out, tracking_uri=store.uri, publish=False, generated_at="test")
    return out


def _rows(path: Path, section: str) -> list[dict]:
    with path.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["section"] == section]


def test_configs_are_ranked_on_the_seed_mean_with_shared_ranks_for_ties(boards_dir, store):
    real = _rows(boards_dir / "cifar10_default.csv", "real")
    assert [(r["rank"], r["model"]) for r in real] == [
        ("1", "spikformer-2-384"),
        ("2", "spikformer-4-384"),
        ("3", "spikformer-2-256"),
        ("3", "spikformer-4-256"),
    ]
    b, a, d, _ = real
    assert (b["top1_mean"], b["top1_std"], b["top1_n"]) == ("93.5", "0.707107", "2")
    assert (a["top1_mean"], a["top1_std"], a["top1_n"]) == ("92", "2.64575", "3")  # sqrt(7)
    assert (d["top1_mean"], d["top1_std"], d["top1_n"]) == ("80", "1.41421", "2")  # grouped without a hash
    assert a["top1_final"] == "91" and a["seeds"] == "0 1 2" and a["epochs"] == "3"
    assert sorted(a["run_ids"].split()) == sorted(store.ids["A"])
    assert sorted(d["run_ids"].split()) == sorted(store.ids["D"])
    assert (a["energy_mj"], a["sops_g"], a["firing_rate"], a["samples_per_s"]) == ("1", "0.5", "0.125", "100")

    md = (boards_dir / "cifar10_default.md").read_text()
    assert "| 1 | spikformer-2-384 | 4 | 9.32 | 93.50 ± 0.71 (n=2) |" in md
    assert "| 2 | spikformer-4-384 | 4 | 9.32 | 92.00 ± 2.65 (n=3) | 91.00 |" in md


def test_missing_metrics_are_dashes_and_final_top1_stands_in_for_best(boards_dir):
    (c,) = [r for r in _rows(boards_dir / "cifar10_default.csv", "real") if r["model"] == "spikformer-4-256"]
    assert (c["top1_mean"], c["top1_std"], c["top1_n"], c["params_m"]) == ("80", "", "1", "4.16")
    assert c["energy_mj"] == c["top5"] == c["sops_g"] == c["firing_rate"] == c["samples_per_s"] == ""
    line = next(l for l in (boards_dir / "cifar10_default.md").read_text().splitlines() if "spikformer-4-256 | 2 |" in l)
    cells = [cell.strip() for cell in line.strip("|").split("|")]
    assert cells[4] == "80.00 (n=1)" and cells[5] == "80.00"
    assert cells[6:11] == ["—"] * 5  # top-5, SOPs, energy, firing rate, samples/s


def test_synthetic_and_unlabelled_runs_have_their_own_section(boards_dir, store):
    real = _rows(boards_dir / "cifar10_default.csv", "real")
    synthetic = _rows(boards_dir / "cifar10_default.csv", "synthetic")
    assert all(r["data"] == "real" for r in real)
    assert [(r["rank"], r["data"], r["top1_mean"]) for r in synthetic] == [("1", "synthetic", "99.5"), ("2", "unknown", "50")]
    # 99.5 on synthetic data beats every real run, yet the real ranking is untouched by it.
    assert real[0]["model"] == "spikformer-2-384"
    md = (boards_dir / "cifar10_default.md").read_text()
    real_part, synthetic_part = md.split("## Synthetic data (not comparable)")
    assert store.ids["S"][0][:8] not in real_part and store.ids["S"][0][:8] in synthetic_part
    assert md.index("## Real data") < md.index("## Published results") < md.index("## Synthetic data")


def test_unfinished_runs_are_excluded_and_counted_and_other_kinds_ignored(boards_dir, store):
    text = (boards_dir / "cifar10_default.csv").read_text() + (boards_dir / "cifar10_default.md").read_text()
    for name in ("F", "R", "K"):
        assert store.ids[name][0] not in text and store.ids[name][0][:8] not in text
    assert "Excluded 2 unfinished run(s) (1 FAILED, 1 RUNNING): only FINISHED runs are ranked." in text
    # Runs of another experiment are found too, on their own task's board.
    (gesture,) = _rows(boards_dir / "dvs128-gesture_default.csv", "real")
    assert gesture["run_ids"] == store.ids["G"][0] and gesture["top1_mean"] == "97"


def test_published_rows_sit_beside_the_runs(boards_dir):
    published = _rows(boards_dir / "cifar10_default.csv", "reference")
    assert [(r["model"], r["time_steps"], r["params_m"], r["top1_mean"]) for r in published] == [
        ("spikformer-4-384", "4", "9.32", "95.19"),
        ("spikformer-2-384", "4", "5.76", "94.8"),
        ("spikformer-4-256", "4", "4.15", "93.94"),
    ]
    assert all(r["source"] == "Zhou et al., Spikformer, ICLR 2023, Table 3" and r["rank"] == "" for r in published)
    imagenet = (boards_dir / "imagenet_default.md").read_text()
    assert "| spikformer-8-768 | 4 | 66.34 | 74.81 | 21.48 | Zhou et al., Spikformer, ICLR 2023, Table 2 |" in imagenet
    # A number found only in an aggregator's listing is shown as such, on every kind of board.
    (ntu,) = _rows(boards_dir / "ntu60_xview.csv", "reference")
    assert ntu["source"].startswith("secondary: ") and "originating paper not identified" in ntu["source"]
    assert "secondary: " in (boards_dir / "ntu60_xview.md").read_text()
    assert "secondary: " in (boards_dir / "index.html").read_text()
    assert "No finished runs for imagenet (default) yet" in imagenet
    assert sorted(p.name for p in boards_dir.glob("*.csv")) == [
        "cifar10-dvs_default.csv", "cifar100_default.csv", "cifar10_default.csv", "dvs128-gesture_default.csv",
        "imagenet_default.csv", "ntu120_xset.csv", "ntu120_xsub.csv", "ntu60_xview.csv",
    ]


def test_regenerating_gives_byte_identical_markdown_and_csv(boards_dir, store, tmp_path):
    generate_leaderboards(tmp_path, tracking_uri=store.uri, publish=False, generated_at="another time")
    names = sorted(p.name for p in boards_dir.iterdir() if p.suffix in (".md", ".csv"))
    assert names == sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".md", ".csv"))
    for name in names:
        assert (tmp_path / name).read_bytes() == (boards_dir / name).read_bytes(), name


def test_published_leaderboard_run_holds_page_boards_and_tables(boards_dir, store, tmp_path):
    result = generate_leaderboards(tmp_path / "out", tracking_uri=store.uri, task="cifar10", generated_at="t")
    client = MlflowClient(tracking_uri=store.uri)
    run = client.get_run(result.run_id)
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == schema.LEADERBOARD_EXPERIMENT
    assert run.info.status == "FINISHED" and run.data.tags[schema.TAG_KIND] == "leaderboard"
    assert run.data.metrics["runs_ranked"] == 10  # A 3, B 2, C 1, D 2 on real data; S and U synthetic
    local = client.download_artifacts(result.run_id, "", str(tmp_path / "dl"))
    assert Path(local, "index.html").read_text() == result.html_path.read_text()
    assert Path(local, "boards", "cifar10_default.csv").read_bytes() == (boards_dir / "cifar10_default.csv").read_bytes()
    table = json.loads(Path(local, "tables", "cifar10_default.json").read_text())
    assert len(table["data"]) == 4 + 3 + 2 and "top1_mean" in table["columns"]
    # The leaderboard run is never read back as a result: boards are unchanged after publishing.
    again = generate_leaderboards(tmp_path / "again", tracking_uri=store.uri, task="cifar10", publish=False)
    assert again.board_files[1].read_bytes() == (boards_dir / "cifar10_default.csv").read_bytes()


def test_html_page_is_self_contained_with_sortable_tables_and_plots(boards_dir):
    page = (boards_dir / "index.html").read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    for forbidden in ("<link", " src=", "href=\"http", "url(", "@import"):
        assert forbidden not in page
    for table_id in ("cifar10_default-real", "cifar10_default-published", "cifar10_default-synthetic"):
        assert f'<table class="sortable" id="{table_id}">' in page
    assert page.count('<svg class="plot"') >= 2 * 2  # energy and T plots of cifar10 and dvs128-gesture
    energy_plot = page.split('id="plot-cifar10_default-energy"')[1].split("</svg>")[0]
    # Front over real + published points with energy: D (0.5 mJ, 80%), A (1 mJ, 92%), B (2 mJ, 93.5%).
    assert energy_plot.count('class="front-ring"') == 3 and 'class="pareto-front"' in energy_plot
    assert "synthetic spikformer-1-64 T=2: top-1 99.50%" in energy_plot  # plotted, not on the front


def test_no_runs_gives_published_rows_and_a_note(tmp_path, capsys):
    uri = tracking.sqlite_uri(tmp_path / "empty" / "mlflow.db")
    code = main(["leaderboard", "--tracking-uri", uri, "--out", str(tmp_path / "out"), "--no-publish"])
    assert code == 0
    md = (tmp_path / "out" / "cifar100_default.md").read_text()
    assert "No finished real-data runs yet." in md and "No finished runs for cifar100 (default) yet" in md
    assert "| spikformer-4-384 | 4 | 9.32 | 77.86 |" in md
    assert not (tmp_path / "empty" / "mlflow.db").exists()  # reading created no store
    assert "cifar100 / default" in capsys.readouterr().out


def test_unreachable_tracking_server_is_a_clear_error(tmp_path, capsys):
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingError, match="unreachable"):
        generate_leaderboards(tmp_path, tracking_uri=uri, publish=False)
    assert main(["leaderboard", "--tracking-uri", uri, "--out", str(tmp_path), "--no-publish"]) == TrackingError.exit_code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and uri in err and "mlflow server" in err


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path):
    bogus = tmp_path / "mlflow.db"
    bogus.write_text("not a database")
    with pytest.raises(TrackingError, match="not an SQLite database"):
        generate_leaderboards(tmp_path / "out", tracking_uri=tracking.sqlite_uri(bogus), publish=False)


def test_task_filter_and_unknown_task(store, tmp_path, capsys):
    out = tmp_path / "only"
    assert main(["leaderboard", "--task", "dvs128-gesture", "--tracking-uri", store.uri, "--out", str(out), "--no-publish"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["dvs128-gesture_default.csv", "dvs128-gesture_default.md", "index.html"]
    assert main(["leaderboard", "--task", "mnist", "--tracking-uri", store.uri, "--out", str(out), "--no-publish"]) == 2
    assert "no such task" in capsys.readouterr().err


def test_references_file_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "refs.csv"
    header = "task,protocol,model,time_steps,params_m,top1,energy_mj,kind,source,table\n"
    bad.write_text(header + "cifar10,default,m,4,1.0,ninety,,primary,paper,Table 1\n")
    with pytest.raises(CorruptDataError, match=r"refs.csv:2: column 'top1' holds 'ninety'"):
        load_references(bad)
    bad.write_text("task,model,top1\ncifar10,m,90\n")
    with pytest.raises(CorruptDataError, match="header lacks column"):
        load_references(bad)
    bad.write_text(header + "cifar10,default,m,4,1.0,90,,primary,paper,\n")
    with pytest.raises(CorruptDataError, match=r"refs.csv:2: empty \['table'\]"):
        load_references(bad)
    bad.write_text(header + "cifar10,default,m,4,1.0,90,,tertiary,paper,Table 1\n")
    with pytest.raises(CorruptDataError, match="kind 'tertiary' is not one of primary, secondary"):
        load_references(bad)


PUBLISHED = {  # (task, protocol, model, T) -> (top-1, params M) as the paper's Tables 2-4 print them
    ("cifar10", "default", "spikformer-4-384", 4): (95.19, 9.32),
    ("cifar10", "default", "spikformer-2-384", 4): (94.80, 5.76),
    ("cifar10", "default", "spikformer-4-256", 4): (93.94, 4.15),
    ("cifar100", "default", "spikformer-4-384", 4): (77.86, 9.32),
    ("cifar100", "default", "spikformer-2-384", 4): (76.95, 5.76),
    ("cifar100", "default", "spikformer-4-256", 4): (75.96, 4.15),
    ("imagenet", "default", "spikformer-8-384", 4): (70.24, 16.82),
    ("imagenet", "default", "spikformer-6-512", 4): (72.46, 23.37),
    ("imagenet", "default", "spikformer-8-512", 4): (73.38, 29.69),
    ("imagenet", "default", "spikformer-10-512", 4): (73.68, 36.01),
    ("imagenet", "default", "spikformer-8-768", 4): (74.81, 66.34),
    ("dvs128-gesture", "default", "spikformer-2-256", 16): (98.3, 2.59),
    ("dvs128-gesture", "default", "spikformer-2-256", 10): (96.9, 2.59),
    ("cifar10-dvs", "default", "spikformer-2-256", 16): (80.9, 2.59),
    ("cifar10-dvs", "default", "spikformer-2-256", 10): (78.9, 2.59),
}


def test_reference_file_holds_the_published_numbers():
    refs = load_references(default_references_path())
    found = {
        (r.task, r.protocol, r.model, int(r.time_steps)): (r.top1, r.params_m)
        for r in refs.itertuples() if not math.isnan(r.time_steps)
    }
    assert found == PUBLISHED
    ntu = {(r.task, r.protocol): r.top1 for r in refs.itertuples() if r.task.startswith("ntu")}
    assert ntu == {("ntu60", "xview"): 80.1, ("ntu120", "xsub"): 61.7, ("ntu120", "xset"): 63.7}
    assert refs.loc[refs["model"] == "spikformer-8-768", "energy_mj"].tolist() == [21.48]


def test_pareto_front_and_ticks():
    points = [Point(1.0, 90, "a"), Point(2.0, 85, "b"), Point(2.0, 93, "c"), Point(3.0, 93, "d"), Point(0.5, 70, "e")]
    assert [p.label for p in pareto_front(points)] == ["e", "a", "c"]
    assert nice_ticks(0.0, 10.0) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert nice_ticks(72.5, 75.2) == [73.0, 74.0, 75.0]
    assert nice_ticks(0.013, 0.05, count=4) == [0.02, 0.03, 0.04, 0.05]


def test_every_published_row_names_an_installed_task_and_protocol():
    from suite.task_registry import get_task

    refs = load_references(default_references_path())
    for task, protocol in sorted(set(zip(refs["task"], refs["protocol"]))):
        assert protocol in get_task(task).protocols, (task, protocol)
