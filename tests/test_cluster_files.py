"""The files in cluster/: every YAML loads, and the fields the suite relies on agree with each other
and with the suite (image and version, Ray version, ports, token auth, GPUs, the job's command line,
the MLflow server's address, what listens where)."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import ray
import yaml

import suite
from suite import ray_jobs_client
from suite.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
IMAGE = f"registry.example.com/spikformer-suite:{suite.__version__}"
RAY_SECRET = "spikformer-ray-token"
HEAD_PORTS = {"gcs-server": 6379, "dashboard": 8265, "client": 10001}


def load(rel: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((CLUSTER / rel).read_text()) if doc is not None]


def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def test_every_yaml_loads_and_every_file_is_explained_in_the_readme():
    readme = (CLUSTER / "README.md").read_text()
    files = sorted(p for p in CLUSTER.rglob("*") if p.is_file() and p.name != "README.md")
    assert files, "cluster/ is empty"
    for path in files:
        rel = path.relative_to(CLUSTER).as_posix()
        assert f"`{rel}`" in readme, f"cluster/README.md does not explain {rel}"
        if path.suffix in (".yaml", ".yml"):
            assert load(rel), f"{rel} has no YAML documents"


def dockerfile_stages() -> list[tuple[str, str]]:
    """(FROM image, the stage's text) for each stage of cluster/Dockerfile."""
    text = (CLUSTER / "Dockerfile").read_text()
    parts = re.split(r"^FROM (\S+).*$", text, flags=re.M)
    return list(zip(parts[1::2], parts[2::2]))


def test_dockerfile_builds_on_the_same_ray_and_installs_the_suite_from_its_wheel():
    from tests.test_wheel import BUILD_WHEEL

    (builder, build), (base, image) = dockerfile_stages()
    # stage 1 builds the wheel the way tests/test_wheel.py builds the one it installs and runs
    assert builder.startswith("python:3.11") and "COPY . ." in build
    assert f"{shlex.join(BUILD_WHEEL)} /dist ." in " ".join(build.split())
    # stage 2: the Jobs API client and the cluster must match; only the wheel crosses over
    assert base == f"rayproject/ray:{ray.__version__}-py311-gpu"
    assert "COPY --from=wheel /dist/ /tmp/dist/" in image and not re.search(r"^COPY (?!--from=wheel)", image, re.M)
    extras = re.search(r'spikformer_suite-\*\.whl\)\[([a-z,]+)\]"', image).group(1).split(",")
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert sorted(extras) == sorted(set(declared) - {"test"})  # every feature extra, not the test tools
    assert "cd / && suite models" in image and "native_cpu.available()" in image  # checked outside any source tree
    assert "apt-get install" in image and " g++" in image
    assert re.search(r"SUITE_HOME=/mnt/shared/", image) and "SUITE_DATA_ROOT=/data" in image
    ignored = (CLUSTER / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", ".git", "data", "build", "dist", "*.egg-info"} <= set(ignored)


def ray_cluster_specs() -> list[tuple[str, dict]]:
    (raycluster,) = by_kind(load("kuberay/raycluster.yaml"), "RayCluster")
    (rayjob,) = by_kind(load("kuberay/rayjob.yaml"), "RayJob")
    return [("RayCluster", raycluster["spec"]), ("RayJob", rayjob["spec"]["rayClusterSpec"])]


@pytest.mark.parametrize("kind, spec", ray_cluster_specs(), ids=["RayCluster", "RayJob"])
def test_kuberay_clusters_run_the_image_with_token_auth_ports_and_gpus(kind, spec):
    assert spec["rayVersion"] == ray.__version__
    assert spec["authOptions"] == {"mode": "token", "secretName": RAY_SECRET}
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # drivers only: no training on the head
    (head_container,) = head["template"]["spec"]["containers"]
    assert head_container["image"] == IMAGE
    assert {p["name"]: p["containerPort"] for p in head_container["ports"]} == HEAD_PORTS
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    mounts = {m["mountPath"] for m in head_container["volumeMounts"]}
    assert {"/data", "/mnt/shared"} <= mounts
    (group,) = spec["workerGroupSpecs"]
    (worker,) = group["template"]["spec"]["containers"]
    assert worker["image"] == IMAGE
    assert int(worker["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    assert worker["resources"]["limits"]["nvidia.com/gpu"] == worker["resources"]["requests"]["nvidia.com/gpu"]
    assert {"/data", "/mnt/shared", "/dev/shm"} <= {m["mountPath"] for m in worker["volumeMounts"]}
    claims = {v["persistentVolumeClaim"]["claimName"] for v in group["template"]["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    assert claims == {pvc["metadata"]["name"] for pvc in load("kuberay/storage.yaml")}


def mlflow_service_url() -> str:
    docs = load("mlflow/kubernetes.yaml")
    (service,) = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == "mlflow"]
    port = service["spec"]["ports"][0]["port"]
    return f"http://{service['metadata']['name']}.{service['metadata']['namespace']}.svc.cluster.local:{port}"


def test_rayjob_entrypoint_is_a_valid_suite_run_that_fits_the_cluster_and_logs_to_the_mlflow_service():
    (rayjob,) = by_kind(load("kuberay/rayjob.yaml"), "RayJob")
    spec = rayjob["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:3] == ["python", "-m", "suite"]
    args = build_parser().parse_args(argv[3:])  # the suite's own parser accepts it
    assert args.command == "run" and args.address == "auto"
    assert args.tracking_uri == mlflow_service_url()
    assert ray_jobs_client.check_cluster_tracking_uri(args.tracking_uri, "http://127.0.0.1:8265")
    (group,) = spec["rayClusterSpec"]["workerGroupSpecs"]
    (worker,) = group["template"]["spec"]["containers"]
    gpus = group["maxReplicas"] * int(worker["resources"]["limits"]["nvidia.com/gpu"])
    assert int(args.workers) * float(args.gpus_per_worker) <= gpus
    cpus = int(worker["resources"]["limits"]["cpu"])
    assert int(args.cpus_per_worker) <= cpus
    assert spec["shutdownAfterJobFinishes"] is True


def test_mlflow_on_kubernetes_uses_postgres_and_s3_and_accepts_its_service_name():
    docs = load("mlflow/kubernetes.yaml")
    (deployment,) = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"] == "mlflow"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = dict(a.lstrip("-").split("=", 1) for a in container["args"] if "=" in a)
    assert args["backend-store-uri"].startswith("postgresql://mlflow:$(POSTGRES_PASSWORD)@mlflow-postgres:5432/")
    assert args["artifacts-destination"].startswith("s3://") and "--serve-artifacts" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://mlflow-minio:9000"
    assert "secretKeyRef" in env["POSTGRES_PASSWORD"]["valueFrom"]  # no password in the manifest
    host = mlflow_service_url().removeprefix("http://")
    assert host in args["allowed-hosts"].split(",")
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    assert {"mlflow", "mlflow-postgres", "mlflow-minio"} <= set(services)
    assert all(s["spec"].get("type", "ClusterIP") == "ClusterIP" for s in services.values())


def test_mlflow_compose_stack_is_private_by_default_and_needs_real_secrets():
    (compose,) = load("mlflow/docker-compose.yaml")
    mlflow = compose["services"]["mlflow"]
    assert mlflow["ports"] == ["${MLFLOW_BIND:-127.0.0.1}:5000:5000"]
    command = " ".join(mlflow["command"])
    assert "--backend-store-uri=postgresql://" in command and "--artifacts-destination=s3://" in command
    assert mlflow["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert ":?" in compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"]  # refuses to start without it
    assert not any("ports" in compose["services"][name] for name in ("postgres", "minio"))
    example = (CLUSTER / "mlflow" / "mlflow.env.example").read_text()
    assert {"POSTGRES_PASSWORD", "S3_ACCESS_KEY", "S3_SECRET_KEY", "MLFLOW_BIND"} <= set(re.findall(r"^(\w+)=", example, re.M))


def test_aws_launcher_has_gpu_workers_token_auth_and_a_loopback_dashboard():
    (config,) = load("ray-aws-gpu.yaml")
    assert config["provider"]["type"] == "aws"
    assert config["docker"]["image"] == IMAGE
    run_options = " ".join(config["docker"]["run_options"])
    assert "--env RAY_AUTH_MODE=token" in run_options and "/mnt/shared" in run_options
    assert config["file_mounts"] == {"~/.ray/auth_token": "~/.ray/auth_token"}
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start and "--dashboard-port=8265" in head_start
    types = config["available_node_types"]
    assert types[config["head_node_type"]]["resources"]["CPU"] == 0
    gpu_types = [t for t in types.values() if t.get("resources", {}).get("GPU", 0) >= 1]
    assert gpu_types and all(t["node_config"]["InstanceType"].startswith(("g", "p")) for t in gpu_types)
    assert sum(t["max_workers"] for t in gpu_types) <= config["max_workers"]
    assert "RAY_AUTH_MODE=disabled" not in (CLUSTER / "ray-aws-gpu.yaml").read_text()


def test_readme_commands_match_the_manifests():
    readme = (CLUSTER / "README.md").read_text()
    assert f"create secret generic {RAY_SECRET} --from-literal=auth_token=" in readme
    (raycluster,) = by_kind(load("kuberay/raycluster.yaml"), "RayCluster")
    name, namespace = raycluster["metadata"]["name"], raycluster["metadata"]["namespace"]
    assert f"kubectl -n {namespace} port-forward svc/{name}-head-svc 8265:8265" in readme
    assert f"--tracking-uri {mlflow_service_url()}" in readme
    for secret in ("mlflow-postgres", "mlflow-s3"):
        assert f"create secret generic {secret}" in readme
