"""Model families from spikingjelly 2.0's model zoo (`spikingjelly.activation_based.model`),
registered under `spikformer_suite.models` in pyproject.toml exactly as a third-party package's
would be. `adapter` fits a zoo network to the suite's model contract; `resnets` declares the families.
"""
