"""Spiking ResNets of spikingjelly's zoo as model families: SEW-ResNet, Spiking ResNet, MS-ResNet.

SEW-ResNet and Spiking ResNet are torchvision's ResNets with spiking neurons; their builders take
the neuron class and its arguments. The suite gives them its own LIF semantics (tau 2, hard reset
to 0, detached reset, sigmoid surrogate with alpha 4), or IF neurons with `neuron="if"`. Their
first convolution reads 3 channels upstream; other inputs (2-channel event frames) get a
first convolution of the same shape for that many channels. MS-ResNet builds its own neurons
(the paper's) and takes the input channels itself.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

from suite.models.zoo.adapter import ZooConfig, zoo_family

DEPTHS = (18, 34, 50, 101, 152)


def _neuron_args(config: ZooConfig) -> dict:
    from spikingjelly.activation_based import neuron, surrogate

    kind = neuron.IFNode if config.option("neuron") == "if" else neuron.LIFNode
    args = dict(spiking_neuron=kind, v_reset=0.0, detach_reset=True, surrogate_function=surrogate.Sigmoid(alpha=4.0))
    return args if kind is neuron.IFNode else {**args, "tau": 2.0, "decay_input": True}


def _fit_input_channels(net: nn.Module, in_channels: int) -> nn.Module:
    from spikingjelly.activation_based import layer

    old = net.conv1
    if old.in_channels != in_channels:
        net.conv1 = layer.Conv2d(in_channels, old.out_channels, old.kernel_size, old.stride, old.padding, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")  # as upstream inits conv1
    return net


def _torchvision_style(extra: Callable[[ZooConfig], dict]):
    def make(builder, config: ZooConfig) -> nn.Module:
        net = builder(num_classes=config.num_classes, **extra(config), **_neuron_args(config))
        return _fit_input_channels(net, config.in_channels)

    return make


SEW_RESNET = zoo_family(
    "sew-resnet",
    "SEW-ResNet (Fang et al., NeurIPS 2021): spike-element-wise residual connections",
    {f"sew-resnet-{depth}": f"sew_resnet:sew_resnet{depth}" for depth in DEPTHS},
    _torchvision_style(lambda config: dict(cnf=config.option("cnf"))),
    time_steps=4,
    choices={"cnf": ("ADD", "AND", "IAND"), "neuron": ("lif", "if")},
    source="spikingjelly.activation_based.model.sew_resnet",
)

SPIKING_RESNET = zoo_family(
    "spiking-resnet",
    "Spiking ResNet: torchvision's ResNet with spiking neurons after every BatchNorm",
    {f"spiking-resnet-{depth}": f"spiking_resnet:spiking_resnet{depth}" for depth in DEPTHS},
    _torchvision_style(lambda config: {}),
    time_steps=4,
    choices={"neuron": ("lif", "if")},
    source="spikingjelly.activation_based.model.spiking_resnet",
)

MS_RESNET = zoo_family(
    "ms-resnet",
    "MS-ResNet (Hu et al., TNNLS 2024): membrane-shortcut residual connections",
    {f"ms-resnet-{depth}": f"ms_resnet:ms_resnet{depth}" for depth in (18, 34)},
    lambda builder, config: builder(T=config.time_steps, in_channels=config.in_channels, num_classes=config.num_classes),
    time_steps=6,
    source="spikingjelly.activation_based.model.ms_resnet",
)
