"""infra/: the cluster launcher config passes Ray's own validation, the KubeRay manifests carry the
fields KubeRay needs and take secrets only from Secrets, the images pin torch and install the
project, and the compose services bind to loopback only."""

from __future__ import annotations

import argparse
import copy
import fnmatch
import importlib.metadata
import json
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
TORCH_PIN = "torch==2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Names of environment variables whose values must never be written into a file.
SECRET_NAME = re.compile(r"SECRET|PASSWORD|ACCESS_KEY|TOKEN", re.IGNORECASE)
# What a real credential looks like: AWS key ids, and long random strings after a secret name.
LEAKED = [
    re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"),
    re.compile(r"(SECRET_ACCESS_KEY|PASSWORD|AUTH_TOKEN)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{24,}"),
]


def load(rel: str):
    return yaml.safe_load((INFRA / rel).read_text())


def train_cli() -> Callable[[list[str]], argparse.Namespace]:
    """vavl.commands.train's own parse_args (the module imports no torch, Ray or MLflow)."""
    from vavl.commands.train import parse_args

    return parse_args


def assert_no_literal_secrets(text: str, where: str) -> None:
    for pattern in LEAKED:
        match = pattern.search(text)
        assert match is None, f"{where} holds what looks like a credential: {match.group(0)!r}"


# ---------------------------------------------------------------- Ray cluster launcher


@pytest.fixture(scope="module")
def cluster() -> dict:
    return load("cluster.yaml")


def test_cluster_config_passes_rays_own_validation(cluster):
    # What `ray up` does before it touches the cloud: merge defaults, then validate.
    prepared = prepare_config(copy.deepcopy(cluster))
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"


def test_ray_validation_would_catch_a_broken_cluster_config(cluster):
    # Proves the check above has teeth: a misspelt node-type field is refused by the schema.
    broken = copy.deepcopy(cluster)
    broken["available_node_types"]["gpu_1x"]["max_worker"] = 4
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(broken))


def test_cluster_node_types_cpu_head_and_gpu_workers(cluster):
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert head["resources"]["CPU"] == 0, "the head should not take training or data tasks"
    assert "min_workers" not in head or head["min_workers"] == 0

    gpu_types = {name: t for name, t in types.items() if t["resources"].get("GPU", 0) > 0}
    assert set(gpu_types) == {"gpu_1x", "gpu_4x"}
    assert types["gpu_1x"]["node_config"]["InstanceType"] == "g5.xlarge"
    assert types["gpu_1x"]["resources"]["GPU"] == 1
    assert types["gpu_4x"]["node_config"]["InstanceType"] == "g5.12xlarge"
    assert types["gpu_4x"]["resources"]["GPU"] == 4
    for name, t in gpu_types.items():
        assert t["min_workers"] == 0, f"{name} should scale from zero"
        assert 1 <= t["max_workers"] <= cluster["max_workers"], name
        # A node type's own worker_setup_commands replace the global ones: keep the chmod.
        assert any("chmod 600" in c for c in t["worker_setup_commands"]), name
        assert any("torch.cuda.is_available()" in c for c in t["worker_setup_commands"]), name
    # CPU nodes exist for ingest and run the CPU image.
    assert types["cpu"]["resources"].get("GPU", 0) == 0
    assert types["cpu"]["docker"]["worker_image"].endswith("-cpu")


def test_cluster_images_auth_and_secrets(cluster):
    docker = cluster["docker"]
    assert docker["head_image"].endswith("-cpu")
    assert docker["worker_image"].endswith("-gpu")
    assert "--env RAY_AUTH_MODE=token" in docker["run_options"]
    # The token and the env file come from the user's machine, not from this file.
    assert cluster["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    env_remote = next(r for r, local in cluster["file_mounts"].items() if "cluster.env" in local)
    for cmd in cluster["head_start_ray_commands"] + cluster["worker_start_ray_commands"]:
        if "ray start" in cmd:
            assert cmd.index(f". {env_remote}") < cmd.index("ray start"), cmd
    assert_no_literal_secrets((INFRA / "cluster.yaml").read_text(), "cluster.yaml")


# ---------------------------------------------------------------- KubeRay


def containers(cluster_spec: dict) -> list[tuple[str, dict]]:
    found = [("head", c) for c in cluster_spec["headGroupSpec"]["template"]["spec"]["containers"]]
    for group in cluster_spec["workerGroupSpecs"]:
        found += [(group["groupName"], c) for c in group["template"]["spec"]["containers"]]
    return found


def check_ray_cluster_spec(spec: dict, where: str) -> None:
    assert spec["rayVersion"] == ray.__version__, f"{where}: rayVersion != installed Ray"
    assert spec["authOptions"]["mode"] == "token"
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert head["template"]["spec"]["containers"][0]["image"].endswith("-cpu")
    names = [g["groupName"] for g in spec["workerGroupSpecs"]]
    assert len(names) == len(set(names)) and all(names), f"{where}: group names {names}"
    gpu_groups = [
        g
        for g in spec["workerGroupSpecs"]
        if "nvidia.com/gpu" in g["template"]["spec"]["containers"][0]["resources"]["limits"]
    ]
    assert gpu_groups, f"{where}: no GPU worker group"
    for g in spec["workerGroupSpecs"]:
        assert isinstance(g["rayStartParams"], dict)
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], g["groupName"]
    for g in gpu_groups:
        c = g["template"]["spec"]["containers"][0]
        assert c["image"].endswith("-gpu"), g["groupName"]
        assert int(c["resources"]["limits"]["nvidia.com/gpu"]) >= 1
    for group, c in containers(spec):
        env = {e["name"]: e for e in c.get("env", [])}
        assert {"MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(env)
        for name, entry in env.items():
            if SECRET_NAME.search(name):
                assert "value" not in entry, f"{where}/{group}: {name} given inline"
                assert entry["valueFrom"]["secretKeyRef"]["name"], f"{where}/{group}: {name}"


def test_raycluster_has_the_fields_kuberay_needs():
    doc = load("kuberay/raycluster.yaml")
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] == "RayCluster"
    assert doc["metadata"]["name"]
    check_ray_cluster_spec(doc["spec"], "raycluster.yaml")
    gpu = next(g for g in doc["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu")
    assert gpu["minReplicas"] == 0 and gpu["maxReplicas"] >= 1
    assert_no_literal_secrets((INFRA / "kuberay/raycluster.yaml").read_text(), "raycluster.yaml")


def test_rayjob_runs_training_on_enough_gpus():
    doc = load("kuberay/rayjob.yaml")
    assert doc["apiVersion"] == "ray.io/v1"
    assert doc["kind"] == "RayJob"
    assert doc["metadata"]["name"]
    spec = doc["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    check_ray_cluster_spec(spec["rayClusterSpec"], "rayjob.yaml")

    argv = shlex.split(spec["entrypoint"])
    assert argv[0] == "python" and argv[1].endswith("pipelines/train.py")
    args = train_cli()(argv[2:])  # the real CLI accepts the arguments
    assert (ROOT / "configs" / Path(args.config).name).is_file()
    assert args.store.startswith("s3://")
    assert any(s.startswith("train.storage_path=s3://") for s in args.set)
    gpus = sum(
        g["replicas"]
        * int(
            g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0)
        )
        for g in spec["rayClusterSpec"]["workerGroupSpecs"]
    )
    assert args.workers * args.gpus_per_worker <= gpus, "the job would wait for GPUs forever"

    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert isinstance(runtime_env["env_vars"], dict)
    leaked = [k for k in runtime_env["env_vars"] if SECRET_NAME.search(k)]
    assert not leaked, f"secrets belong in the pod env (secretKeyRef), not runtimeEnvYAML: {leaked}"
    assert_no_literal_secrets((INFRA / "kuberay/rayjob.yaml").read_text(), "rayjob.yaml")


# ---------------------------------------------------------------- images


def dockerfile(name: str) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """(instruction, argument) pairs with line continuations joined, and ARG defaults."""
    text = re.sub(r"\\\n", " ", (INFRA / "docker" / name).read_text())
    steps = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            steps.append((op.upper(), rest.strip()))
    args = dict(a.split("=", 1) for op, a in steps if op == "ARG" and "=" in a)
    return steps, args


def expand(text: str, args: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), text)


@pytest.mark.parametrize(
    ("name", "base_suffix", "cpu"), [("Dockerfile", "-gpu", False), ("Dockerfile.cpu", "", True)]
)
def test_images_pin_torch_and_install_the_project(name, base_suffix, cpu):
    steps, args = dockerfile(name)
    base = expand(next(a for op, a in steps if op == "FROM"), args)
    assert base == f"rayproject/ray:{ray.__version__}-py311{base_suffix}"

    runs = [expand(a, args) for op, a in steps if op == "RUN"]
    torch_runs = [r for r in runs if "pip install" in r and f'"{TORCH_PIN}"' in r]
    assert torch_runs, f"{name}: no pip install of {TORCH_PIN}"
    for run in runs:  # wherever pip is told about torch, it is told the exact release
        if "pip install" in run:
            assert re.findall(r'"torch[^"]*"', run) in ([], [f'"{TORCH_PIN}"']), run
    # CPU: the wheel comes from the PyTorch CPU index; GPU: PyPI's (CUDA) build, no CPU index.
    assert (f"--index-url {CPU_INDEX}" in torch_runs[0].replace('"', "")) is cpu
    assert (CPU_INDEX in " ".join(runs)) is cpu
    assert any(re.search(r"pip install \.(\s|$)", r) for r in runs), (
        f"{name}: project not installed"
    )
    # The build itself verifies which torch it ended with.
    assert any("torch.version.cuda is None" in r for r in runs) is cpu

    copies = [[w for w in a.split() if not w.startswith("--")] for op, a in steps if op == "COPY"]
    sources = {src.rstrip("/") for words in copies for src in words[:-1]}
    assert {"pyproject.toml", "README.md", "platform", "pipelines", "tuning", "configs"} <= sources
    for src in sources:
        assert (ROOT / src).exists(), f"{name}: COPY {src} does not exist in the repository"
    users = [a for op, a in steps if op == "USER"]
    assert users and users[-1] not in {"root", "0"}, f"{name}: runs as root"


# ---------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict:
    return load("compose.yaml")


def test_compose_services_and_loopback_ports(compose):
    services = compose["services"]
    assert {"postgres", "minio", "minio-init", "mlflow"} <= set(services)
    assert services["postgres"]["image"] == "postgres:16"
    published = 0
    for name, svc in services.items():
        for port in svc.get("ports", []):
            published += 1
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert published >= 2
    assert "ports" in services["mlflow"] and "ports" not in services["postgres"]
    for name in ("postgres", "minio", "mlflow"):
        assert services[name]["healthcheck"]["test"], name
    init = services["minio-init"]
    assert init["depends_on"]["minio"]["condition"] == "service_healthy"
    assert "mc mb" in " ".join(init["command"])
    assert services["mlflow"]["depends_on"]["minio-init"]["condition"] == (
        "service_completed_successfully"
    )


def test_compose_mlflow_server(compose):
    mlflow = compose["services"]["mlflow"]
    env = mlflow["environment"]
    assert env["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://")
    assert env["MLFLOW_BACKEND_STORE_URI"].split("@")[1].startswith("postgres:5432/")
    assert env["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    # The server runs the same MLflow release as the clients in this project.
    build = mlflow["build"]["dockerfile_inline"]
    assert f"mlflow=={importlib.metadata.version('mlflow')}" in build
    assert "psycopg[binary]" in build and "boto3" in build

    flags = dict(a.split("=", 1) for a in mlflow["command"] if a.startswith("--"))
    assert flags["--artifacts-destination"].startswith("s3://")
    hosts = re.fullmatch(r"\$\{\w+:-(.*)\}", flags["--allowed-hosts"]).group(1).split(",")

    # MLflow compares the Host header (with port) to each entry, fnmatch-style when it has "*".
    def allowed(host):
        return any(fnmatch.fnmatch(host, h) if "*" in h else host == h for h in hosts)

    assert allowed("127.0.0.1:5000") and allowed("localhost:5000") and allowed("mlflow:5000")
    assert not allowed("attacker.example:5000")


def test_compose_credentials_come_from_variables(compose):
    text = (INFRA / "compose.yaml").read_text()
    # Every `$` is a compose variable `${NAME...}` or an escaped `$$` for the container's shell.
    for match in re.finditer(r"\$(?!\$|\{\w+(:?-[^}]*)?\})", text.replace("$$", "")):
        pytest.fail(f"unescaped $ at offset {match.start()}: {text[match.start() :][:30]!r}")
    for name, svc in compose["services"].items():
        env = svc.get("environment", {})
        for key, value in env.items():
            if SECRET_NAME.search(key):
                assert str(value).startswith("${"), f"{name}: {key} is written literally"
    uri = compose["services"]["mlflow"]["environment"]["MLFLOW_BACKEND_STORE_URI"]
    assert "${POSTGRES_PASSWORD" in uri


# ---------------------------------------------------------------- README


def test_readme_recipes_match_the_tools():
    text = (INFRA / "README.md").read_text()
    for needle in [
        "export RAY_AUTH_MODE=token",
        "ray get-auth-token --generate",
        "ray start --head",
        "ray up infra/cluster.yaml",
        "docker compose -f infra/compose.yaml up",
        "kubectl apply -f infra/kuberay/rayjob.yaml",
        "--runtime-env-json",
    ]:
        assert needle in text, needle
    # The runtime env shown is valid JSON with env_vars, and carries no secrets.
    env_json = re.search(r"ENV='(\{.*?\})'", text, re.DOTALL).group(1)
    env_vars = json.loads(env_json)["env_vars"]
    assert "MLFLOW_TRACKING_URI" in env_vars
    assert not [k for k in env_vars if SECRET_NAME.search(k)]
    # Every train command in a bash block is accepted by the real CLI.
    blocks = re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
    lines = [line for b in blocks for line in b.replace("\\\n", " ").splitlines()]
    commands = [" ".join(line.split()) for line in lines]
    train = [c.split(" -- ", 1)[1] for c in commands if "-- python pipelines/train.py" in c]
    assert train
    for command in train:
        argv = shlex.split(command)
        args = train_cli()(argv[2:])
        assert args.workers >= 1 and args.store.startswith("s3://")
