"""`suite submit -- run ...` / `-- tune ...`: run a suite command as a Ray job on a cluster.

The command after `--` is parsed here first, so a typo fails on the laptop and not after an
upload. The job gets the project folder (when submitted from a checkout), the tracking URI and
any --env variables through its runtime_env; the command then prints the job id, follows the
job's logs and exits non-zero when the job does not succeed.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from suite.cli import program_name

logger = logging.getLogger(__name__)

# Commands that make sense as a job; the others only talk to a cluster or print local tables.
NOT_SUBMITTABLE = ("submit", "jobs")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "submit",
        help="run a suite command (run, tune, ...) as a Ray job on a cluster",
        description="Submit `python -m suite COMMAND ...` to a Ray cluster through the Ray Jobs API.",
        epilog=f"example: {program_name()} submit --address http://HEAD:8265 --tracking-uri "
        "http://MLFLOW:5000 -- run --task cifar10 --model spikformer-4-384 --workers 4",
    )
    add_connection_args(p)
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking server every node reaches, e.g. http://mlflow:5000 (default: $MLFLOW_TRACKING_URI; "
        "required; file and sqlite URIs are refused: each node would write its own copy)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--working-dir", type=Path, help="folder uploaded as the job's working dir (default: this checkout)")
    where.add_argument(
        "--no-working-dir", action="store_true", help="upload nothing: the cluster's image already holds the suite"
    )
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN", help="extra .gitignore-style exclude")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="environment variable for the job")
    p.add_argument("--submission-id", help="job id to use (default: chosen by Ray)")
    p.add_argument("--entrypoint-num-cpus", type=float, default=None, help="CPUs reserved for the job's driver")
    p.add_argument("--no-wait", action="store_true", help="print the job id and return without following the logs")
    p.add_argument("suite_args", nargs=argparse.REMAINDER, metavar="-- COMMAND ...", help="the suite command to run")
    p.set_defaults(func=run)


def add_connection_args(p) -> None:
    p.add_argument(
        "--address",
        help="Ray dashboard address, http://HEAD:8265 (default: $RAY_API_SERVER_ADDRESS, else an http:// $RAY_ADDRESS)",
    )
    p.add_argument(
        "--token-file",
        help="file holding the cluster's auth token (default: $RAY_AUTH_TOKEN, $RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token)",
    )


def check_suite_command(suite_args: list[str]) -> tuple[str, list[str]]:
    """The command after `--`, validated by the suite's own parser; returns (command, args)."""
    from suite.cli import COMMANDS, build_parser
    from suite.errors import UsageError

    args = suite_args[1:] if suite_args[:1] == ["--"] else list(suite_args)
    submittable = [c for c in COMMANDS if c not in NOT_SUBMITTABLE]
    if not args:
        raise UsageError(f"nothing to submit: add `-- COMMAND ...` with COMMAND one of {', '.join(submittable)}")
    if args[0] not in submittable:
        raise UsageError(f"cannot submit {args[0]!r}: the command after -- must be one of {', '.join(submittable)}")
    try:
        build_parser().parse_args(args)
    except SystemExit as err:  # argparse already printed what is wrong
        raise UsageError(f"the command after -- is invalid: `{shlex.join(args)}` (see the message above)") from err
    return args[0], args


def accepts_option(command: str, option: str) -> bool:
    from suite.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return option in subparsers.choices[command]._option_string_actions


def _given(args: list[str], option: str) -> bool:
    return any(a == option or a.startswith(option + "=") for a in args)


def job_args(command: str, args: list[str], tracking_uri: str) -> list[str]:
    """The command as the job runs it: logging to the cluster's tracking server, training on the cluster.

    `--tracking-uri` is added when the command takes it (explicit in the job's logs and params; the
    job's $MLFLOW_TRACKING_URI says the same), and `--address auto` so that `run`/`tune` join the cluster the job runs on (Ray sets
    RAY_ADDRESS for jobs) instead of starting a private Ray inside the job.
    """
    extra = []
    if accepts_option(command, "--tracking-uri") and not _given(args, "--tracking-uri"):
        extra += ["--tracking-uri", tracking_uri]
    if accepts_option(command, "--address") and not _given(args, "--address"):
        extra += ["--address", "auto"]
    return [args[0], *extra, *args[1:]]


def run(args) -> int:
    from suite import ray_jobs_client

    command, suite_args = check_suite_command(args.suite_args)
    address = ray_jobs_client.dashboard_address(args.address)
    tracking_uri = ray_jobs_client.check_cluster_tracking_uri(args.tracking_uri, address)
    working_dir = None if args.no_working_dir else (args.working_dir or ray_jobs_client.find_project_root())
    runtime_env = ray_jobs_client.build_runtime_env(
        tracking_uri=tracking_uri,
        working_dir=working_dir,
        env_vars=ray_jobs_client.parse_env_vars(args.env),
        excludes=args.exclude,
    )
    entrypoint = shlex.join(["python", "-m", "suite", *job_args(command, suite_args, tracking_uri)])

    client = ray_jobs_client.job_client(address, args.token_file)
    logger.info("submitting to %s%s: %s", address, f" (uploading {working_dir})" if working_dir else "", entrypoint)
    job_id = ray_jobs_client.call(
        client,
        f"submitting to {address}",
        client.submit_job,
        entrypoint=entrypoint,
        runtime_env=runtime_env,
        submission_id=args.submission_id,
        entrypoint_num_cpus=args.entrypoint_num_cpus,
        metadata={"suite.command": command},
    )
    print(f"job id: {job_id}", flush=True)
    if args.no_wait:
        print(f"follow it with: {program_name()} jobs logs {job_id} --follow --address {address}")
        return 0
    try:
        ray_jobs_client.follow_logs(client, job_id, sys.stdout)
        info = ray_jobs_client.wait_for_end(client, job_id)
    except KeyboardInterrupt:
        print(
            f"\nstopped following; job {job_id} keeps running. "
            f"Stop it with: {program_name()} jobs stop {job_id} --address {address}",
            file=sys.stderr,
        )
        return 130
    ray_jobs_client.raise_for_job(client, job_id, info)
    print(f"job {job_id} SUCCEEDED", flush=True)
    return 0
