"""`suite models`: the registry's table (name, stem, input, T, heads, params, paper top-1)."""

from __future__ import annotations


COLUMNS = ["name", "stem", "input", "classes", "T", "heads", "params", "paper_top1"]


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the registered Spikformer variants")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def model_rows() -> list[dict]:
    import torch

    from suite.leaderboard.references import model_references
    from suite.models import count_parameters, create_model, list_models

    rows = []
    for name in list_models():
        with torch.device("meta"):  # parameter counts without allocating 66M floats
            model = create_model(name)
        cfg = model.config
        rows.append(
            {
                "name": name,
                "stem": cfg.stem,
                "input": f"{cfg.in_channels}x{cfg.img_size[0]}x{cfg.img_size[1]}",
                "classes": cfg.num_classes,
                "T": cfg.time_steps,
                "heads": cfg.heads,
                "params": count_parameters(model),
                "paper_top1": model_references(name),  # leaderboards/references.csv
            }
        )
    return rows


def run(args) -> int:
    rows = model_rows()
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
    else:
        from suite.table import format_table

        print(format_table(rows, COLUMNS, formats={"params": "{:,}".format}))
        print("\nAny 'spikformer-L-D' name works (L blocks, D dims); see `suite.models.create_model`.")
    return 0
