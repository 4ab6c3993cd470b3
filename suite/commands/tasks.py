"""`suite tasks`: every registered task (built-in or third-party) and whether its data is found."""

from __future__ import annotations

COLUMNS = ["name", "modality", "protocols", "classes", "input", "model", "T", "data"]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tasks",
        help="list the registered tasks and whether their data is found",
        description="List every task registered under the 'spikformer_suite.tasks' entry-point group. "
        "A plugin that fails to load stops the command with an error naming it.",
    )
    p.add_argument(
        "--data-root",
        metavar="DIR",
        help="folder holding one sub-folder per task (default: $SUITE_DATA_ROOT, else ~/.cache/spikformer-suite/data)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--recipe",
        metavar="TASK",
        help="print TASK's resolved recipe instead: every value with where it comes from in the official code",
    )
    p.set_defaults(func=run)


def task_rows(data_root=None) -> list[dict]:
    from suite.task_registry import load_all_tasks

    rows = []
    for task in load_all_tasks():
        recipe = task.recipe
        rows.append(
            {
                "name": task.name,
                "modality": task.modality,
                "protocols": ",".join(task.protocols),
                "classes": task.num_classes,
                "input": "x".join(str(d) for d in task.sample_shape()),
                "model": recipe.model,
                "T": recipe.time_steps,
                "data": "found" if task.is_available(data_root) else "missing",
                "data_dir": str(task.data_dir(data_root)),
            }
        )
    return rows


def run(args) -> int:
    from suite.table import format_table
    from suite.task import resolve_data_root

    if args.recipe:
        return _print_recipe(args.recipe, args.json)
    rows = task_rows(args.data_root)
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
        return 0
    print(format_table(rows, COLUMNS))
    print(f"\ndata root: {resolve_data_root(args.data_root)}  (each task's data lives in <data root>/<name>/)")
    print("Every task also runs on `--data synthetic`: generated samples with the task's shapes and classes.")
    return 0


def _print_recipe(name: str, as_json: bool) -> int:
    from suite.recipe_table import OFFICIAL_REPO, recipe_rows
    from suite.table import format_table
    from suite.task_registry import get_task

    rows = recipe_rows(get_task(name))
    if as_json:
        import json

        print(json.dumps(rows, indent=2))
        return 0
    print(format_table(rows, ["key", "value", "source"]))
    print(f"\nsources: files of {OFFICIAL_REPO}, file:line official-key; 'not applied' rows say why.")
    return 0
