"""`python -m suite leaderboard`: boards per task/protocol from the finished runs in MLflow."""

from __future__ import annotations

import argparse

DEFAULT_OUT = "leaderboards"
COLUMNS = ["board", "real configs", "best top-1 (%)", "synthetic configs", "published", "excluded runs"]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "leaderboard",
        help="build leaderboards (Markdown, CSV, HTML) from the finished runs in MLflow",
        description=(
            "Read the finished `suite run` and `suite eval` runs from MLflow, aggregate seeds, rank configs per task and "
            "protocol beside the published Spikformer results, write <task>_<protocol>.md/.csv and "
            "index.html, and log them to the MLflow experiment 'leaderboards'."
        ),
    )
    parser.add_argument("--task", help="only this task (default: every task with runs or published results)")
    parser.add_argument(
        "--tracking-uri",
        help="MLflow store to read (default: $MLFLOW_TRACKING_URI, else the suite's local store)",
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT}/)")
    parser.add_argument(
        "--references", help="CSV of published results (default: leaderboards/references.csv of the suite)"
    )
    parser.add_argument(
        "--no-publish", action="store_true", help="only write the files; do not log them to MLflow"
    )
    parser.set_defaults(func=run)


def _known_tasks(references) -> set[str]:
    from suite.task_registry import list_tasks

    return set(list_tasks()) | set(references["task"])


def run(args: argparse.Namespace) -> int:
    from suite.errors import UnknownNameError
    from suite.leaderboard import generate_leaderboards
    from suite.leaderboard.references import load_references
    from suite.leaderboard.store import resolve_tracking_uri
    from suite.table import format_table

    if args.task is not None:
        known = _known_tasks(load_references(args.references))
        if args.task not in known:
            # A task that is neither installed nor published may still have runs in the store.
            from suite.leaderboard.collect import collect_runs

            if args.task not in collect_runs(resolve_tracking_uri(args.tracking_uri)).tasks:
                raise UnknownNameError(
                    f"--task {args.task!r}: no such task installed, published or in MLflow; "
                    f"valid tasks: {', '.join(sorted(known))}"
                )

    result = generate_leaderboards(
        args.out,
        tracking_uri=args.tracking_uri,
        task=args.task,
        references_path=args.references,
        publish=not args.no_publish,
    )
    rows = [
        {
            "board": board.title,
            "real configs": len(board.real),
            "best top-1 (%)": board.real["top1_mean"].max() if not board.real.empty else None,
            "synthetic configs": len(board.synthetic),
            "published": len(board.references),
            "excluded runs": sum(board.unfinished.values()),
        }
        for board in result.boards
    ]
    print(format_table(rows, COLUMNS, formats={"best top-1 (%)": "{:.2f}".format}))
    print(f"\nwrote {len(result.board_files)} board files and {result.html_path}")
    if result.run_id:
        from suite.tracking import client, ui_command

        uri = resolve_tracking_uri(args.tracking_uri)
        experiment_id = client(uri).get_run(result.run_id).info.experiment_id
        print(f"logged to MLflow experiment 'leaderboards', run {result.run_id}; browse: {ui_command(uri, experiment_id)}")
    return 0
