"""The run-setting flags of `suite run`, `suite tune` and `suite eval`, generated from the fields of
`suite.run_settings.RunSettings`: one flag per setting the command takes, with the field's help.

Every value is taken as text and checked by the field's kind when the settings are resolved, so
that a bad one gives a one-line error naming the flag; on/off settings get `--x` / `--no-x`.
"""

from __future__ import annotations

import argparse

from suite.run_settings import SETTINGS, flag, help_text
from suite.setting_kinds import Switch

GROUPS = {
    "recipe": "training recipe (default: the task's recipe; see `suite tasks --recipe TASK`)",
    "default": "run settings",
    "environment": "data, tracking and cluster (a flag, else the environment, else a default)",
}


def add_setting_flags(parser: argparse.ArgumentParser, command: str, leave_out: tuple[str, ...] = ()) -> None:
    """A flag for every setting that `command` takes (except `leave_out`), grouped by where its default comes from."""
    groups = {source: parser.add_argument_group(title) for source, title in GROUPS.items()}
    for name, setting in SETTINGS.items():
        if not setting.has_flag or command not in setting.commands or name in leave_out:
            continue
        group = groups[setting.source]
        if isinstance(setting.kind, Switch):
            group.add_argument(flag(name), dest=name, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text(name))
        else:
            group.add_argument(flag(name), dest=name, metavar=setting.metavar, help=help_text(name))
        if name == "data":
            group.add_argument("--data-root", metavar="PATH", help="the data root (same as --data PATH)")


def overrides_from_args(args: argparse.Namespace) -> dict:
    """The settings given on the command line ({name: text}; None: not given)."""
    from suite.errors import UsageError

    # getattr with a default: each command takes its own subset of the flags.
    values = {name: getattr(args, name, None) for name, setting in SETTINGS.items() if setting.has_flag}
    data_root = getattr(args, "data_root", None)
    if values["data"] is not None and data_root is not None:
        raise UsageError("give either --data or --data-root, not both")
    values["data"] = values["data"] if values["data"] is not None else data_root
    return values
