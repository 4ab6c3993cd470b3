"""Log generated boards to MLflow, so that someone browsing the MLflow UI finds them.

One run per generation in the `leaderboards` experiment, tagged kind == "leaderboard" (so it is
never read back as a result): index.html at the artifact root, the Markdown and CSV boards under
boards/, and each board as an MLflow table under tables/.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

import suite
from suite import schema
from suite.errors import TrackingError
from suite.leaderboard.boards import Board
from suite.leaderboard.render_csv import CSV_COLUMNS, board_rows
from suite.leaderboard.store import check_reachable, fast_failing_mlflow, redact
from suite.tracking import get_or_create_experiment

log = logging.getLogger(__name__)

TAG_BOARDS = "suite.leaderboard.boards"
TAG_TASK_FILTER = "suite.leaderboard.task"


def _description(boards: list[Board]) -> str:
    lines = ["Spikformer Suite leaderboards. Open **index.html** under Artifacts for the sortable boards and plots.", ""]
    for board in boards:
        best = board.real.iloc[0] if not board.real.empty else None
        lead = f"best real-data top-1 {best.top1_mean:.2f}% ({best.model})" if best is not None and best.top1_mean == best.top1_mean else "no real-data runs"
        lines.append(f"- {board.title}: {board.run_count} run(s), {lead}")
    return "\n".join(lines)


def publish_boards(
    tracking_uri: str,
    boards: list[Board],
    html_path: Path,
    board_files: list[Path],
    task: str | None = None,
) -> str:
    """Log the boards as one FINISHED run in the leaderboards experiment; returns its run id."""
    check_reachable(tracking_uri)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    with fast_failing_mlflow():
        client = MlflowClient(tracking_uri=tracking_uri)
        try:
            experiment_id = get_or_create_experiment(tracking_uri, schema.LEADERBOARD_EXPERIMENT)
            run = client.create_run(
                experiment_id,
                run_name=f"leaderboard-{task}" if task else "leaderboard",
                tags={
                    schema.TAG_KIND: "leaderboard",
                    schema.TAG_VERSION: suite.__version__,
                    TAG_BOARDS: " ".join(b.slug for b in boards),
                    TAG_TASK_FILTER: task or "all",
                    "mlflow.note.content": _description(boards),
                },
            )
        except MlflowException as err:
            raise TrackingError(f"cannot create the leaderboard run in {redact(tracking_uri)}: {err}") from err
        run_id = run.info.run_id
        try:
            client.log_artifact(run_id, str(html_path))
            for path in board_files:
                client.log_artifact(run_id, str(path), artifact_path="boards")
            for board in boards:
                table = pd.DataFrame(board_rows(board), columns=list(CSV_COLUMNS), dtype=object)
                client.log_table(run_id, data=table, artifact_file=f"tables/{board.slug}.json")
            client.log_metric(run_id, "boards", len(boards))
            client.log_metric(run_id, "runs_ranked", sum(b.run_count for b in boards))
        except Exception as err:
            client.set_terminated(run_id, status="FAILED")
            raise TrackingError(f"logging the leaderboard artifacts to {redact(tracking_uri)} failed: {err}") from err
        client.set_terminated(run_id)
    log.info("logged the leaderboards to MLflow experiment %r, run %s", schema.LEADERBOARD_EXPERIMENT, run_id)
    return run_id
