"""Every published reference row of every built-in task names a buildable model whose exact
parameter count matches the row's params_m (so the boards' params column can be trusted)."""

import pytest
import torch

from suite.models import count_parameters, create_model
from suite.task_registry import get_task, list_tasks


@pytest.mark.parametrize("task_name", list_tasks())
def test_reference_rows_match_the_models(task_name):
    task = get_task(task_name)
    for ref in task.config.references:
        assert task.resolve_protocol(ref.protocol) in task.protocols
        if ref.params_m is None or not ref.model.startswith("spikformer-"):
            continue
        kwargs = task.model_kwargs(ref.time_steps)
        with torch.device("meta"):
            model = create_model(ref.model, **kwargs)
        assert abs(count_parameters(model) / 1e6 - ref.params_m) <= 0.0051, (task_name, ref)
