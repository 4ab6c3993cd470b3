"""`suite models`: every registered model family's listed models (name, stem, input, T, heads,
params, paper top-1, family, input kinds), then one line per family saying what else it accepts."""

from __future__ import annotations

COLUMNS = ["name", "stem", "input", "classes", "T", "heads", "params", "paper_top1", "family", "takes"]


def register(subparsers) -> None:
    p = subparsers.add_parser("models", help="list the registered model families and their models")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def model_rows() -> list[dict]:
    """One row per listed model of every family (a broken family plugin raises PluginError)."""
    import torch

    from suite.leaderboard.references import model_references
    from suite.models import count_parameters, list_families

    rows = []
    for family in list_families():
        for name in family.names:
            config = family.resolve(name)
            with torch.device("meta"):  # parameter counts without allocating 66M floats
                model = family.build(config)
            fields = config.to_dict()
            height, width = fields["img_size"]
            rows.append(
                {
                    "name": name,
                    "stem": fields.get("stem"),  # Spikformer's input stem; other families have none
                    "input": f"{fields['in_channels']}x{height}x{width}",
                    "classes": fields["num_classes"],
                    "T": fields["time_steps"],
                    "heads": fields.get("heads"),
                    "params": count_parameters(model),
                    "paper_top1": model_references(name) or None,  # leaderboards/references.csv
                    "family": family.name,
                    "takes": "+".join(family.inputs),
                }
            )
    return rows


def family_notes() -> list[str]:
    from suite.models import list_families

    return [
        f"{family.name}: {family.summary}" + (f"; also {family.pattern_help}" if family.pattern_help else "")
        + f" (options: {', '.join(family.options) or 'none'}; from {family.source})"
        for family in list_families()
    ]  # fmt: skip


def run(args) -> int:
    rows = model_rows()
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
    else:
        from suite.table import format_table

        print(format_table(rows, COLUMNS, formats={"params": "{:,}".format}))
        print("\nModel families (a model name starts with its family's name; see `suite.models.create_model`):")
        print("\n".join(f"  {line}" for line in family_notes()))
    return 0
