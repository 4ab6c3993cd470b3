"""`suite eval` rows on the boards, from a real MLflow store: marked with their checkpoint, ranked
with the trained runs of their data kind, aggregated per checkpoint, NeuroBench columns shown."""

from __future__ import annotations

import csv

from mlflow import MlflowClient

from suite import schema, tracking
from suite.leaderboard import generate_leaderboards

SHA_A, SHA_B = "a" * 8 + "1" * 56, "b" * 8 + "2" * 56


def _log(uri, *, kind, top1, checkpoint=None, data="real:abc", metrics=None, config_hash=None):
    tags = {
        schema.TAG_KIND: kind, schema.TAG_TASK: "cifar10", schema.TAG_PROTOCOL: "default",
        schema.TAG_MODEL: "spikformer-4-384", schema.TAG_TIME_STEPS: "4", schema.TAG_DATA: data, schema.TAG_SEED: "0",
    }
    if checkpoint:
        tags[schema.TAG_CHECKPOINT_SHA256] = checkpoint
    tags[schema.TAG_CONFIG_HASH] = config_hash or f"{kind}-{checkpoint}"
    run_id = tracking.create_run(uri, schema.DEFAULT_EXPERIMENT, run_name=kind, tags=tags, params={"epochs": 300})
    client = MlflowClient(tracking_uri=uri)
    values = {schema.M_TOP1: top1, schema.M_TOP5: 99.0, **(metrics or {})}
    if kind == schema.KIND_RUN:
        values[schema.M_BEST_TOP1] = top1
    for key, value in values.items():
        client.log_metric(run_id, key, value)
    client.set_terminated(run_id, "FINISHED")
    return run_id


def test_eval_rows_are_marked_ranked_and_carry_neurobench_columns(tmp_path):
    uri = tracking.sqlite_uri(tmp_path / "mlflow.db")
    trained = _log(uri, kind=schema.KIND_RUN, top1=94.0)
    nb = {schema.M_NB_EFFECTIVE_ACS: 2.5e9, schema.M_NB_EFFECTIVE_MACS: 1e8, schema.M_NB_DENSE: 9e9,
          schema.M_NB_ACTIVATION_SPARSITY: 0.875, schema.M_NB_CONNECTION_SPARSITY: 0.0, schema.M_NB_FOOTPRINT: 2**20 * 37.5}
    # Two evaluations of checkpoint A (one row, n=2), one of B, one of A on synthetic data.
    evals_a = [_log(uri, kind=schema.KIND_EVAL, top1=t, checkpoint=SHA_A, metrics=nb) for t in (95.0, 95.5)]
    _log(uri, kind=schema.KIND_EVAL, top1=93.0, checkpoint=SHA_B)
    _log(uri, kind=schema.KIND_EVAL, top1=10.0, checkpoint=SHA_A, data=schema.DATA_SYNTHETIC)

    result = generate_leaderboards(tmp_path / "boards", tracking_uri=uri, task="cifar10", publish=False)
    (board,) = result.boards
    real = board.real
    assert list(real["kind"]) == ["eval", "run", "eval"] and list(real["rank"]) == [1.0, 2.0, 3.0]
    assert real.loc[0, "top1_n"] == 2 and real.loc[0, "run_ids"] == " ".join(sorted(evals_a))
    assert real.loc[1, "run_ids"] == trained and real.loc[0, "checkpoint"] == SHA_A
    assert list(board.synthetic["kind"]) == ["eval"]

    text = (tmp_path / "boards" / "cifar10_default.md").read_text()
    real_part = text.split("## Published results")[0]
    header = next(line for line in real_part.splitlines() if line.startswith("| rank"))
    assert header.endswith("| NB eff. ACs (G) | NB eff. MACs (G) | NB dense (G) | NB act. sparsity | NB conn. sparsity | NB footprint (MiB) |")
    row_a = next(line for line in real_part.splitlines() if "[eval sha256:aaaaaaaa]" in line)
    assert row_a.startswith("| 1 | spikformer-4-384 [eval sha256:aaaaaaaa] |") and "95.25 ± 0.35 (n=2)" in row_a
    assert row_a.endswith("| 2.50 | 0.100 | 9.00 | 0.8750 | 0.0000 | 37.50 |")
    row_run = next(line for line in real_part.splitlines() if trained[:8] in line)
    assert "[eval" not in row_run and row_run.startswith("| 2 | spikformer-4-384 |")
    # The synthetic table has no NeuroBench values, so no NB columns.
    synthetic_part = text.split("## Synthetic data")[1]
    assert "NB eff. ACs" not in synthetic_part and "[eval sha256:aaaaaaaa]" in synthetic_part

    with open(tmp_path / "boards" / "cifar10_default.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    first = rows[0]
    assert (first["kind"], first["checkpoint"], first["nb_effective_acs"]) == ("eval", SHA_A, "2.5e+09")
    assert {r["kind"] for r in rows if r["section"] == "real"} == {"eval", "run"}
    html = result.html_path.read_text()
    assert "spikformer-4-384 [eval sha256:aaaaaaaa]" in html and 'data-key="nb_effective_acs"' in html
