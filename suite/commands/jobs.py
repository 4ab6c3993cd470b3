"""`suite jobs list|status|logs|stop`: the Ray jobs of a cluster (those `suite submit` started too)."""

from __future__ import annotations

import datetime as dt
import sys


def register(subparsers) -> None:
    from suite.commands.submit import add_connection_args

    p = subparsers.add_parser("jobs", help="list, inspect, follow or stop the Ray jobs of a cluster")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="all jobs: id, status, start, end, entrypoint")
    add_connection_args(listing)

    status = actions.add_parser("status", help="one job's status and message")
    add_connection_args(status)
    status.add_argument("job_id")

    logs = actions.add_parser("logs", help="one job's logs")
    add_connection_args(logs)
    logs.add_argument("job_id")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")

    stop = actions.add_parser("stop", help="stop a running job")
    add_connection_args(stop)
    stop.add_argument("job_id")
    stop.add_argument("--no-wait", action="store_true", help="return without waiting for the job to stop")

    p.set_defaults(func=run)


def _time(ms: int | None) -> str | None:
    if not ms:
        return None
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def format_jobs(jobs) -> str:
    from suite.table import format_table

    rows = [
        {"JOB ID": j.submission_id or j.job_id, "STATUS": str(j.status), "START": _time(j.start_time),
         "END": _time(j.end_time), "ENTRYPOINT": j.entrypoint}
        for j in sorted(jobs, key=lambda j: j.start_time or 0)
    ]
    return format_table(rows, ["JOB ID", "STATUS", "START", "END", "ENTRYPOINT"])


def run(args) -> int:
    from suite import ray_jobs_client

    client = ray_jobs_client.job_client(args.address, args.token_file)
    if args.action == "list":
        print(format_jobs(ray_jobs_client.call(client, "listing jobs", client.list_jobs)))
        return 0

    job = args.job_id
    if args.action == "status":
        info = ray_jobs_client.call(client, f"job {job}", client.get_job_info, job)
        print(f"{job}: {info.status}" + (f" ({info.message})" if info.message else ""))
        return 0 if str(info.status) != "FAILED" else 1
    if args.action == "logs":
        ray_jobs_client.call(client, f"job {job}", client.get_job_status, job)  # unknown ids fail clearly here
        if args.follow:
            ray_jobs_client.follow_logs(client, job, sys.stdout)
        else:
            sys.stdout.write(ray_jobs_client.call(client, f"logs of job {job}", client.get_job_logs, job))
        return 0
    # stop
    stopped = ray_jobs_client.call(client, f"stopping job {job}", client.stop_job, job)
    if not stopped:
        info = ray_jobs_client.call(client, f"job {job}", client.get_job_info, job)
        print(f"{job} was not running: {info.status}")
        return 0
    if args.no_wait:
        print(f"{job}: stop requested")
        return 0
    info = ray_jobs_client.wait_for_end(client, job, timeout_s=120)
    print(f"{job}: {info.status}")
    return 0
