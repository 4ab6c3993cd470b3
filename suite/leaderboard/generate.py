"""The whole pipeline: MLflow runs -> boards -> Markdown, CSV and HTML files -> MLflow run."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

from suite.leaderboard.boards import Board, build_boards
from suite.leaderboard.collect import collect_runs
from suite.leaderboard.references import load_references
from suite.leaderboard.render_csv import render_csv
from suite.leaderboard.render_html import render_html
from suite.leaderboard.render_md import render_markdown
from suite.leaderboard.store import redact
from suite.tracking import resolve_tracking

log = logging.getLogger(__name__)

HTML_NAME = "index.html"


@dataclass(frozen=True)
class GeneratedBoards:
    boards: list[Board]
    board_files: list[Path]  # Markdown and CSV, two per board
    html_path: Path
    tracking_uri: str
    run_id: str | None  # the MLflow run holding them, when published


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="\n")
    return path


def generate_leaderboards(
    out_dir: str | Path,
    *,
    tracking_uri: str | None = None,
    task: str | None = None,
    references_path: str | Path | None = None,
    publish: bool = True,
    generated_at: str | None = None,
) -> GeneratedBoards:
    """Read finished runs, write `<task>_<protocol>.md/.csv` and index.html into out_dir, log them."""
    found = resolve_tracking(tracking_uri)
    uri = found.value
    log.info("reading runs from MLflow store %s (from %s)", redact(uri), found.source)
    references = load_references(references_path)
    collected = collect_runs(uri, task=task)
    boards = build_boards(collected, references, task=task)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    board_files = []
    for board in boards:
        board_files.append(_write(out / f"{board.slug}.md", render_markdown(board)))
        board_files.append(_write(out / f"{board.slug}.csv", render_csv(board)))
    stamp = generated_at or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    html_path = _write(out / HTML_NAME, render_html(boards, source=redact(uri), generated_at=stamp))
    log.info("wrote %d board(s) and %s to %s", len(boards), HTML_NAME, out)

    run_id = None
    if publish:
        from suite.leaderboard.publish import publish_boards

        run_id = publish_boards(uri, boards, html_path, board_files, task=task)
    return GeneratedBoards(boards, board_files, html_path, uri, run_id)
