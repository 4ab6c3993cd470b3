"""Model families through the `spikformer_suite.models` entry points: `suite models`, the
spikingjelly zoo families (built, trained, counted), a third-party family from a throwaway
dist-info, and broken plugins failing loudly with their name."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from suite import schema, tracking
from suite.errors import PluginError, UnknownNameError, UsageError
from suite.metrics import SNNMonitor
from suite.models import count_parameters, create_model, get_family, list_models, options_for_task
from suite.models.families import family_names, list_families, load_family
from suite.models.family import ENTRY_POINT_GROUP
from suite.task_registry import get_task
from tests.helpers.plugins import make_plugin, plugin_path, run_suite, table  # noqa: F401  (plugin_path: a fixture)

BUILT_IN = ["ms-resnet", "sew-resnet", "spikformer", "spiking-resnet"]
ZOO = ["sew-resnet-18", "spiking-resnet-18", "ms-resnet-18"]
RESNET18_PARAMS = 11_689_512  # torchvision's resnet18 (1000 classes): SEW and Spiking ResNet add no weights


def calibrated(model, x):
    """Eval mode with BatchNorm statistics taken from `x`, so that the layers really spike."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None
    with torch.no_grad():
        model.train()(x)
    return model.eval()


def test_built_in_families_register_through_entry_points():
    assert family_names() == BUILT_IN
    assert [family.name for family in list_families()] == BUILT_IN
    assert get_family("spikformer-4-384").name == "spikformer"
    assert get_family("spikformer-3-40").name == "spikformer"  # pattern names, not only listed ones
    assert get_family("sew-resnet-50").name == "sew-resnet"
    assert list(get_family("spikformer-4-384").names) == list_models()


@pytest.mark.slow
def test_models_command_lists_spikformer_variants_and_the_zoo(tmp_path):
    result = run_suite(["models"], tmp_path, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    assert set(list_models()) < set(rows)
    assert rows["spikformer-4-384"]["params"] == "9,324,730" and rows["spikformer-4-384"]["family"] == "spikformer"
    for name in ("sew-resnet-18", "sew-resnet-152", "spiking-resnet-34", "ms-resnet-18", "ms-resnet-34"):
        assert rows[name]["family"] == name.rsplit("-", 1)[0] and rows[name]["takes"] == "static+sequence"
    assert rows["sew-resnet-18"]["params"] == rows["spiking-resnet-18"]["params"] == f"{RESNET18_PARAMS:,}"
    assert (rows["ms-resnet-18"]["input"], rows["ms-resnet-18"]["T"]) == ("3x224x224", "6")
    assert rows["sew-resnet-18"]["T"] == rows["spiking-resnet-18"]["T"] == "4"
    for family in BUILT_IN:
        assert f"\n  {family}: " in result.stdout  # one note per family after the table

    result = run_suite(["models", "--json"], tmp_path, cwd=tmp_path)
    by_name = {row["name"]: row for row in json.loads(result.stdout)}
    assert by_name["sew-resnet-18"]["params"] == RESNET18_PARAMS and by_name["sew-resnet-18"]["heads"] is None
    assert by_name["spikformer-2-256"]["stem"] == "dvs" and by_name["spikformer-2-256"]["heads"] == 16


@pytest.mark.parametrize("name", ZOO)
def test_zoo_models_take_static_and_sequence_input_without_state_between_batches(name):
    torch.manual_seed(0)
    x = torch.rand(3, 3, 32, 32) * 3
    model = calibrated(create_model(name, num_classes=5, img_size=32, time_steps=3), x)
    with torch.no_grad():
        first = model(x)
        model(torch.rand(4, 3, 32, 32) * 3)  # another batch in between must not matter
        again = model(x)
        sequence = model(x.unsqueeze(1).repeat(1, 3, 1, 1, 1))
        other = model(torch.rand(3, 3, 3, 32, 32) * 3)
    assert first.shape == (3, 5) and torch.isfinite(first).all()
    assert torch.equal(first, again)
    torch.testing.assert_close(first, sequence)
    assert not torch.allclose(first, other)


@pytest.mark.parametrize("name", ZOO)
def test_zoo_models_train_on_two_channel_event_frames(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=4, in_channels=2, img_size=32, time_steps=2)
    logits = model(torch.rand(2, 2, 2, 32, 32))  # [B, T, C, H, W]
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum().item() for g in grads) > 0


def test_a_task_s_options_reach_a_family_only_when_it_takes_them():
    dvs = get_task("dvs128-gesture")
    zoo = options_for_task("sew-resnet-18", dvs, time_steps=4)
    assert zoo == {"num_classes": 11, "in_channels": 2, "img_size": (128, 128), "time_steps": 4}
    spikformer = options_for_task("spikformer-2-256", dvs, time_steps=4)
    assert spikformer == {**zoo, "stem": "dvs", "attn_scale": 0.25}  # the task's overrides are Spikformer's
    with pytest.raises(UnknownNameError, match=r"unknown model option\(s\) \['attn_scale'\] for family 'sew-resnet'"):
        create_model("sew-resnet-18", attn_scale=0.25)
    with pytest.raises(UsageError, match=r"model option cnf must be one of ADD, AND, IAND, got 'OR'"):
        create_model("sew-resnet-18", cnf="OR")


@pytest.mark.parametrize("name", ["sew-resnet-18", "spiking-resnet-18"])
def test_resnet_neurons_are_the_suite_s_lif_or_if(name):
    from spikingjelly.activation_based import neuron

    lif, integrate = create_model(name, num_classes=3), create_model(name, num_classes=3, neuron="if")
    assert {type(m) for m in lif.modules() if isinstance(m, neuron.BaseNode)} == {neuron.LIFNode}
    assert {type(m) for m in integrate.modules() if isinstance(m, neuron.BaseNode)} == {neuron.IFNode}
    first = lif.net.sn1
    assert (first.tau, first.v_reset, first.detach_reset, first.surrogate_function.alpha) == (2.0, 0.0, True, 4.0)
    if name == "sew-resnet-18":
        assert {m.cnf for m in create_model(name, cnf="IAND").modules() if hasattr(m, "cnf")} == {"IAND"}


def test_unknown_names_list_the_families_names():
    with pytest.raises(UnknownNameError) as err:
        create_model("vit-4-384")
    assert "no model family's name starts it" in str(err.value)
    assert "spikformer-4-384" in str(err.value) and "sew-resnet-18" in str(err.value) and "ms-resnet-34" in str(err.value)
    with pytest.raises(UnknownNameError) as err:
        create_model("sew-resnet-19")
    assert "not a name of family 'sew-resnet'" in str(err.value) and "sew-resnet-152" in str(err.value)
    assert "spikformer" not in str(err.value)  # only the family that the name's prefix chose


def test_the_monitor_counts_a_zoo_model_s_neurons_and_synapses():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32) * 3
    model = calibrated(create_model("sew-resnet-18", num_classes=10, img_size=32, time_steps=2), x)
    monitor = SNNMonitor(model)
    with torch.no_grad(), monitor.recording():
        model(x)
    summary, layers = monitor.summary(), monitor.firing_rate_table().set_index("layer")
    neurons = [name for name, module in model.named_modules() if isinstance(module, model.neuron_types)]
    assert sorted(summary["firing_rates"]) == sorted(neurons)
    assert len(neurons) == 1 + 8 * 2 + 3  # the stem's, two per basic block, one per downsampling shortcut
    assert 0 < summary["mean_firing_rate"] < 1 and summary["sops_per_sample"] > 0
    assert summary["params"] == count_parameters(model) and summary["energy_mj_per_sample"] > 0
    stem = layers.loc["net.conv1"]  # the image, the same at both steps, is counted once
    assert stem["macs_per_sample"] == stem["dense_macs_per_sample"] / 2 and stem["sops_per_sample"] == 0
    assert layers.loc["net.layer1.0.conv1", "sops_per_sample"] > 0  # spike inputs: accumulates, no MACs
    assert layers.loc["net.layer1.0.conv1", "macs_per_sample"] == 0


# ------------------------------------------------------------------ a third-party family

TOY_FAMILY = '''
from dataclasses import asdict, dataclass

from torch import nn

from suite.models import LIF, ModelFamily


@dataclass(frozen=True)
class ToyConfig:
    width: int
    num_classes: int = 10
    in_channels: int = 3
    img_size: tuple = (32, 32)
    time_steps: int = 2

    def to_dict(self):
        return asdict(self)


class ToyNet(nn.Module):
    """A 3x3 convolution, the suite's LIF neurons, and a linear head on the mean spike count."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.conv = nn.Conv2d(config.in_channels, config.width, 3, padding=1)
        self.lif = LIF()
        self.head = nn.Linear(config.width, config.num_classes)

    def forward(self, x):
        if x.dim() == 4:
            x = x.unsqueeze(1).expand(-1, self.config.time_steps, -1, -1, -1)
        steps, batch = x.shape[1], x.shape[0]
        current = self.conv(x.transpose(0, 1).flatten(0, 1)).unflatten(0, (steps, batch))
        return self.head(self.lif(current).mean((0, 3, 4)))


def resolve(name, num_classes=10, in_channels=3, img_size=(32, 32), time_steps=2):
    return ToyConfig(int(name.rsplit("-", 1)[1]), num_classes, in_channels, tuple(img_size), time_steps)


FAMILY = ModelFamily(
    name="toy-snn", summary="a convolution, LIF neurons and a linear head", names=("toy-snn-8",),
    resolve=resolve, build=ToyNet, pattern=r"toy-snn-[1-9][0-9]*", pattern_help="any 'toy-snn-W' (W channels)",
    source="made by hand",
)
'''


def toy_family(site):
    return make_plugin(
        site, "toy_snn_family", {"toy-snn": "toy_snn_family:FAMILY"}, {"toy_snn_family.py": TOY_FAMILY},
        group=ENTRY_POINT_GROUP,
    )  # fmt: skip


def test_third_party_family_appears_in_suite_models(tmp_path):
    result = run_suite(["models"], toy_family(tmp_path / "site"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    toy = rows["toy-snn-8"]
    params = 3 * 8 * 9 + 8 + 8 * 10 + 10
    assert (toy["family"], toy["input"], toy["classes"], toy["T"], toy["params"]) == ("toy-snn", "3x32x32", "10", "2", str(params))
    assert "spikformer-4-384" in rows and "sew-resnet-18" in rows
    assert "toy-snn: a convolution, LIF neurons and a linear head; also any 'toy-snn-W' (W channels)" in result.stdout


def test_third_party_family_trains_on_a_task_and_is_counted(tmp_path, plugin_path):
    plugin_path(toy_family(tmp_path / "site"))
    assert "toy-snn" in family_names()
    task = get_task("cifar10")
    model = create_model("toy-snn-16", **options_for_task("toy-snn-16", task, time_steps=3))
    assert model.config.width == 16 and model.config.time_steps == 3 and model.config.num_classes == 10
    x, y = next(iter(torch.utils.data.DataLoader(task.build_dataset("train", data="synthetic", synthetic_size=8), batch_size=8)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    before = model.head.weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, model.head.weight)
    monitor = SNNMonitor(model)
    with torch.no_grad(), monitor.recording():
        model(x * 4)
    summary = monitor.summary()
    assert list(summary["firing_rates"]) == ["lif"] and 0 < summary["mean_firing_rate"] < 1
    assert summary["flops_per_sample"] > 0  # its convolution and head read real values: MACs, no SOPs


def test_broken_family_makes_suite_models_fail_with_its_name(tmp_path):
    site = make_plugin(
        tmp_path / "site", "broken_family", {"broken-net": "broken_family:FAMILY"},
        {"broken_family.py": "raise ImportError(\"this family needs the 'libfoo' package\")\n"},
        group=ENTRY_POINT_GROUP,
    )  # fmt: skip
    result = run_suite(["models"], site, cwd=tmp_path)
    assert result.returncode == 1
    assert "model family plugin 'broken-net' (broken_family:FAMILY) failed to load" in result.stderr
    assert "libfoo" in result.stderr and "Traceback" not in result.stderr and result.stdout == ""


BAD_FAMILIES = {
    "misnamed": ("ModelFamily('other-name', 's', ('other-name-1',), str, str)", r"declares name 'other-name'"),
    "not-a-family": ("object()", r"is not a suite.models.family.ModelFamily \(got object\)"),
    "stray-names": (
        "ModelFamily('stray-names', 's', ('resnet-18',), str, str)",
        r"breaks the model-family contract: names \['resnet-18'\] do not start with the family name 'stray-names-'",
    ),
    "bad-inputs": (
        "ModelFamily('bad-inputs', 's', ('bad-inputs-1',), str, str, inputs=('audio',))",
        r"inputs \('audio',\) must be some of \('static', 'sequence'\)",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_FAMILIES))
def test_families_breaking_the_contract_fail_loudly_with_their_name(tmp_path, plugin_path, name):
    body, message = BAD_FAMILIES[name]
    module = "bad_family_" + name.replace("-", "_")
    source = f"from suite.models import ModelFamily\nFAMILY = {body}\n"
    plugin_path(make_plugin(tmp_path / "site", module, {name: f"{module}:FAMILY"}, {f"{module}.py": source}, group=ENTRY_POINT_GROUP))
    with pytest.raises(PluginError, match=rf"model family plugin '{name}' \({module}:FAMILY\) .*{message}"):
        load_family(name)
    with pytest.raises(PluginError):
        create_model(f"{name}-1")
    assert create_model("spikformer-1-32", num_classes=3).config.dim == 32  # other families still load by name


def test_install_metadata_without_model_families_says_to_reinstall(tmp_path):
    """An editable install made before model families existed: its metadata, first on the path, registers none."""
    from suite.task import ENTRY_POINT_GROUP as TASKS

    site = make_plugin(tmp_path / "site", "spikformer_suite", {"cifar10": "tasks.cifar:Cifar10"}, {}, group=TASKS)
    result = run_suite(["models"], site, cwd=tmp_path)
    assert result.returncode == 1 and result.stdout == ""
    assert "no model family is registered under the entry-point group 'spikformer_suite.models'" in result.stderr
    assert "reinstall it (pip install -e .)" in result.stderr


def test_a_family_name_registered_twice_is_refused(tmp_path, plugin_path):
    plugin_path(
        make_plugin(tmp_path / "site", "impostor", {"spikformer": "impostor:FAMILY"}, {"impostor.py": ""}, group=ENTRY_POINT_GROUP)
    )
    with pytest.raises(PluginError, match=r"model family name 'spikformer' is registered twice"):
        family_names()


# ------------------------------------------------------------------ a zoo model through `suite run`


@pytest.mark.slow
def test_suite_run_trains_a_zoo_model_into_one_mlflow_run_with_its_own_board_row_and_eval_reads_it(tmp_path):
    from tests.helpers.cli_runs import mlflow_runs

    home = tmp_path / "home"
    args = ["run", "--task", "cifar10", "--model", "sew-resnet-18", "--data", "synthetic", "--epochs", "1",
            "--synthetic-size", "16", "--batch-size", "8", "--time-steps", "2", "--warmup-epochs", "1", "--amp", "off",
            "--workers", "1"]  # fmt: skip
    result = run_suite(args, tmp_path, cwd=tmp_path, timeout=600, SUITE_HOME=str(home))
    assert result.returncode == 0, result.stdout + result.stderr
    client, runs = mlflow_runs(tracking.sqlite_uri(home / "mlflow.db"))
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0].data
    assert run.tags[schema.TAG_MODEL] == "sew-resnet-18"
    with torch.device("meta"):
        params = count_parameters(create_model("sew-resnet-18", num_classes=10))
    assert run.metrics[schema.M_PARAMS] == pytest.approx(params / 1e6)
    for counted in (schema.M_FIRING_RATE, schema.M_SOPS, schema.M_ENERGY):
        assert counted in run.metrics and run.metrics[counted] >= 0  # the SNN monitor counted the zoo model

    boards = tmp_path / "boards"
    board = run_suite(["leaderboard", "--tracking-uri", tracking.sqlite_uri(home / "mlflow.db"), "--out", str(boards),
                       "--no-publish"], tmp_path, cwd=tmp_path)  # fmt: skip
    assert board.returncode == 0, board.stderr
    with (boards / "cifar10_default.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["section"] == "synthetic"]
    assert [row["model"] for row in rows] == ["sew-resnet-18"]
    assert rows[0]["run_ids"] == runs[0].info.run_id and rows[0]["energy_mj"] not in ("", "-")

    # `suite eval` reads the run's checkpoint into the zoo model (the plan, made before Ray starts).
    from suite.engine.eval_driver import EvalRequest, plan_eval

    uri = tracking.sqlite_uri(home / "mlflow.db")
    plan = plan_eval(EvalRequest(task=None, checkpoint=None, run_id=runs[0].info.run_id, overrides={"tracking_uri": uri}))
    assert (plan.checkpoint.format, plan.settings.model, plan.model_config.to_dict()["time_steps"]) == ("suite", "sew-resnet-18", 2)
    assert sum(v.numel() for k, v in plan.state_dict.items() if not k.endswith("num_batches_tracked") and "running" not in k) == params
