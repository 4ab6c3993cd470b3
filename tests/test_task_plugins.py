"""The plugin contract: built-in and third-party tasks through entry points, `suite tasks`, broken plugins.

Third-party packages are real: a module plus a `*.dist-info` folder with `entry_points.txt`, put
on sys.path / PYTHONPATH, which is exactly what importlib.metadata reads for an installed wheel.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from suite.cli import main
from suite.errors import PluginError
from suite.models import create_model
from suite.task import ENTRY_POINT_GROUP
from suite.task_registry import get_task, list_tasks
from tests.helpers.cifar_files import write_cifar
from tests.helpers.plugins import make_plugin, plugin_path, run_suite, table  # noqa: F401  (plugin_path: a fixture)

BUILT_IN = ["cifar10", "cifar10-dvs", "cifar100", "dvs128-gesture", "imagenet", "ntu120", "ntu60"]

TOY_TASK = '''
from pathlib import Path

import numpy as np
import torch

from suite.task import Task, TaskConfig


class ToyShapes(Task):
    """A third-party task: 16x16 grey images of 3 shapes, stored as one .npz file."""

    config = TaskConfig.from_yaml(Path(__file__).with_name("toy-shapes.yaml"))

    def is_available(self, data_root=None):
        return (self.data_dir(data_root) / "shapes.npz").is_file()

    def build_real_dataset(self, split, *, data_root, **options):
        path = self.data_dir(data_root) / "shapes.npz"
        if not path.is_file():
            raise self.missing_data_error(data_root, "no shapes.npz")
        arrays = np.load(path)
        images = torch.from_numpy(arrays[split + "_x"]).float() / 255
        return torch.utils.data.TensorDataset(images, torch.from_numpy(arrays[split + "_y"]).long())
'''

TOY_CONFIG = """
name: toy-shapes
modality: image
num_classes: 3
input_shape: [1, 16, 16]
stem: cifar
description: circles, squares and crosses
layout: shapes.npz with train_x, train_y, eval_x, eval_y
source: made by hand
recipe: {model: spikformer-1-32, time_steps: 2, epochs: 1, batch_size: 8, lr: 1.0e-3, weight_decay: 0.0}
synthetic_size: {train: 24, eval: 12}
"""


def toy_plugin(site: Path) -> Path:
    return make_plugin(
        site,
        "toy_shapes_plugin",
        {"toy-shapes": "toy_shapes_plugin:ToyShapes"},
        {"toy_shapes_plugin/__init__.py": TOY_TASK, "toy_shapes_plugin/toy-shapes.yaml": TOY_CONFIG},
        group=ENTRY_POINT_GROUP,
    )


def write_toy_data(data_root: Path) -> None:
    rng = np.random.default_rng(0)
    folder = data_root / "toy-shapes"
    folder.mkdir(parents=True)
    arrays = {}
    for split, n in (("train", 12), ("eval", 6)):
        arrays[f"{split}_x"] = rng.integers(0, 256, size=(n, 1, 16, 16), dtype=np.uint8)
        arrays[f"{split}_y"] = np.arange(n) % 3
    np.savez(folder / "shapes.npz", **arrays)


def test_tasks_command_lists_built_ins_and_flips_found_when_data_appears(tmp_path, capsys):
    assert main(["tasks", "--data-root", str(tmp_path)]) == 0
    rows = table(capsys.readouterr().out)
    assert sorted(rows) == BUILT_IN
    assert {row["data"] for row in rows.values()} == {"missing"}
    cifar = rows["cifar10"]
    assert (cifar["modality"], cifar["protocols"], cifar["classes"], cifar["input"]) == (
        "image",
        "default",
        "10",
        "3x32x32",
    )
    assert (cifar["model"], cifar["T"]) == ("spikformer-4-384", "4")
    assert rows["imagenet"]["input"] == "3x224x224" and rows["imagenet"]["classes"] == "1000"

    write_cifar(tmp_path, "cifar10")
    for split in ("train", "val"):
        (tmp_path / "imagenet" / split / "n01440764").mkdir(parents=True)
    assert main(["tasks", "--data-root", str(tmp_path)]) == 0
    rows = table(capsys.readouterr().out)
    found = sorted(name for name, row in rows.items() if row["data"] == "found")
    assert found == ["cifar10", "imagenet"]


def test_tasks_command_reads_the_data_root_from_the_environment(tmp_path, capsys, monkeypatch):
    write_cifar(tmp_path, "cifar100")
    monkeypatch.setenv("SUITE_DATA_ROOT", str(tmp_path))
    assert main(["tasks", "--json"]) == 0
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["cifar100"]["data"] == "found" and rows["cifar10"]["data"] == "missing"
    assert rows["cifar100"]["data_dir"] == str(tmp_path / "cifar100")


def test_third_party_task_appears_in_suite_tasks(tmp_path):
    site = toy_plugin(tmp_path / "site")
    write_toy_data(tmp_path / "data")
    result = run_suite(["tasks", "--data-root", str(tmp_path / "data")], site, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = table(result.stdout)
    assert set(BUILT_IN) < set(rows)
    toy = rows["toy-shapes"]
    assert (toy["modality"], toy["classes"], toy["input"], toy["model"], toy["T"], toy["data"]) == (
        "image",
        "3",
        "1x16x16",
        "spikformer-1-32",
        "2",
        "found",
    )


def test_third_party_dataset_builds_and_runs_through_the_model(tmp_path, plugin_path):
    plugin_path(toy_plugin(tmp_path / "site"))
    write_toy_data(tmp_path / "data")
    assert "toy-shapes" in list_tasks()
    task = get_task("toy-shapes")
    model = create_model(task.recipe.model, lif_backend="reference", **task.model_kwargs())
    for dataset in (task.build_dataset("train", data=tmp_path / "data"), task.build_dataset("eval", data="synthetic")):
        x, y = next(iter(torch.utils.data.DataLoader(dataset, batch_size=6)))
        assert x.shape == (6, 1, 16, 16)
        logits = model(x)
        assert logits.shape == (6, 3) and torch.isfinite(logits).all()
        assert y.tolist() == [0, 1, 2, 0, 1, 2]


def test_broken_plugin_makes_suite_tasks_fail_with_its_name(tmp_path):
    site = make_plugin(
        tmp_path / "site",
        "broken_task_plugin",
        {"broken-task": "broken_task_plugin:BrokenTask"},
        {"broken_task_plugin/__init__.py": "raise ImportError(\"this task needs the 'libfoo' package\")\n"},
        group=ENTRY_POINT_GROUP,
    )
    result = run_suite(["tasks"], site, cwd=tmp_path)
    assert result.returncode == 1
    assert "task plugin 'broken-task' (broken_task_plugin:BrokenTask) failed to load" in result.stderr
    assert "libfoo" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


BAD_PLUGINS = {
    "misnamed": (
        "class Misnamed(Task):\n    config = TaskConfig.from_dict({**BASE, 'name': 'other-name'})\n",
        r"declares name 'other-name'; the entry-point name and config name must match",
    ),
    "not-a-task": ("class NotATask:\n    pass\n", r"is not a suite.task.Task"),
    "failing-init": (
        (
            "class FailingInit(Task):\n    config = TaskConfig.from_dict({**BASE, 'name': 'failing-init'})\n"
            "    def __init__(self):\n        raise RuntimeError('no licence file')\n"
        ),
        r"failed to instantiate: RuntimeError: no licence file",
    ),
    "bad-config": (
        "class BadConfig(Task):\n    config = TaskConfig.from_dict({**BASE, 'modality': 'audio'})\n",
        r"failed to load: PluginError: task config <dict>: modality 'audio' is not one of",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_PLUGINS))
def test_plugins_breaking_the_contract_fail_loudly_with_their_name(tmp_path, plugin_path, name):
    body, message = BAD_PLUGINS[name]
    module = "bad_" + name.replace("-", "_")
    header = (
        "from suite.task import Task, TaskConfig\n"
        "BASE = dict(name='x', modality='image', num_classes=2, input_shape=[1, 8, 8], stem='cifar',\n"
        "            recipe=dict(model='spikformer-1-32', time_steps=1, epochs=1, batch_size=2, lr=0.1,\n"
        "                        weight_decay=0))\n"
    )
    class_name = body.split()[1].split("(")[0].rstrip(":")
    plugin_path(
        make_plugin(
            tmp_path / "site", module, {name: f"{module}:{class_name}"}, {f"{module}.py": header + body},
            group=ENTRY_POINT_GROUP,
        )
    )
    with pytest.raises(PluginError, match=rf"task plugin '{name}' \({module}:{class_name}\) {message}"):
        get_task(name)
    assert get_task("cifar10").name == "cifar10"  # one broken plugin does not hide the others from get_task


def test_a_name_registered_twice_is_refused(tmp_path, plugin_path):
    plugin_path(
        make_plugin(tmp_path / "site", "impostor", {"cifar10": "impostor:Cifar10"}, {"impostor.py": ""}, group=ENTRY_POINT_GROUP)
    )
    with pytest.raises(PluginError, match=r"task name 'cifar10' is registered twice"):
        list_tasks()
