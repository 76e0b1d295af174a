"""A CNN encoder rewritten for GPU inference: cuDNN's fused kernels, replayed as one CUDA graph a batch.

In eval mode a BatchNorm after a convolution is an affine map per channel, so it folds into the
convolution's weights and bias. cuDNN then runs convolution + bias + ReLU, and convolution + bias +
residual + ReLU, as one kernel each, where the model as built runs three or four (the convolution, then
memory-bound BatchNorm, addition and ReLU passes). memamba.features.captured_encoder captures the result
as one CUDA graph. resnet50_trunc on an H200, bf16, model only, so captured: 27.3k img/s against 15.0k as
built and 21.6k through torch.compile (benchmarks/RESULTS.md, fourteenth pass).

A job keeps a rewrite only where its outputs match the model's on a random batch (relative error at most
MATCH_TOLERANCE, checked by captured_encoder); other models run as they are.
"""

from __future__ import annotations

import copy
import logging
import operator

import torch
from torch import nn

logger = logging.getLogger(__name__)

MATCH_TOLERANCE = {torch.bfloat16: 3e-2, torch.float16: 1e-2, torch.float32: 1e-3}
"""Largest relative error (L2) of the rewritten model's features against the model's (under autocast in
the same precision) on a random batch. bf16 autocast itself is about 5e-3 from float32 for resnet50_trunc."""
_ADDITIONS = (operator.add, operator.iadd, torch.add)
Folded = dict[torch.fx.Node, tuple[torch.Tensor, torch.Tensor]]
"""Conv2d nodes whose BatchNorm was folded away: their (weight, bias), float32."""


def conv_bias_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, *geometry: object) -> torch.Tensor:
    """relu(conv2d(x, weight) + bias): one cuDNN kernel on CUDA. `geometry`: stride, padding, dilation, groups."""
    if x.is_cuda:
        return torch.cudnn_convolution_relu(x, weight, bias, *geometry)
    return torch.relu_(torch.conv2d(x, weight, bias, *geometry))


def conv_bias_add_relu(
    x: torch.Tensor, weight: torch.Tensor, residual: torch.Tensor, bias: torch.Tensor, *geometry: object
) -> torch.Tensor:
    """relu(conv2d(x, weight) + bias + residual): one cuDNN kernel on CUDA."""
    if x.is_cuda:
        return torch.cudnn_convolution_add_relu(x, weight, residual, 1.0, bias, *geometry)
    return torch.relu_(torch.conv2d(x, weight, bias, *geometry).add_(residual))


def fused_graph(model: nn.Module, dtype: torch.dtype) -> torch.fx.GraphModule | None:
    """`model` (eval mode, left unchanged) as an FX graph computing in `dtype` on the model's device: each
    BatchNorm2d that is a Conv2d's only user folded into it, Identity layers dropped, and each zero-padded
    Conv2d called as `conv_bias_relu` (its only user a ReLU), `conv_bias_add_relu` (its only user an
    addition whose only user is a ReLU) or `torch.conv2d`, on weights in `dtype` (NHWC). None where
    nothing is fused, the model has no BatchNorm2d or ReLU layer (a transformer is not even copied), or FX
    cannot trace it."""
    if model.training or not any(isinstance(module, (nn.BatchNorm2d, nn.ReLU)) for module in model.modules()):
        return None
    try:
        graph_module = torch.fx.symbolic_trace(copy.deepcopy(model))
    except Exception as error:  # a model FX cannot trace runs as it is
        logger.info("%s is not rewritten (FX cannot trace it: %s)", type(model).__name__, error)
        return None
    folded = _fold_batch_norms(graph_module)
    _drop_identities(graph_module)
    if not _call_fused_convolutions(graph_module, folded, dtype):
        return None
    _cast_inputs(graph_module, dtype)
    graph_module.delete_all_unused_submodules()
    graph_module.graph.lint()
    graph_module.recompile()
    return graph_module


def folded_weights(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) float32 of the convolution computing norm(conv(x)) for an eval-mode `norm` (folded in
    float64)."""
    scale = norm.running_var.double().add(norm.eps).rsqrt()
    if norm.weight is not None:
        scale = scale * norm.weight.double()
    bias = -norm.running_mean.double() * scale
    if conv.bias is not None:
        bias = bias + conv.bias.double() * scale
    if norm.bias is not None:
        bias = bias + norm.bias.double()
    return (conv.weight.double() * scale.view(-1, 1, 1, 1)).float(), bias.float()


def _fold_batch_norms(graph_module: torch.fx.GraphModule) -> Folded:
    """Erase each BatchNorm2d (eval, with running statistics) whose input is a Conv2d used only by it; the
    folded (weight, bias) of each such Conv2d node."""
    folded = {}
    for node in list(graph_module.graph.nodes):
        norm = _module(graph_module, node, nn.BatchNorm2d)
        source = node.args[0] if norm is not None else None
        conv = _module(graph_module, source, nn.Conv2d)
        if conv is None or len(source.users) != 1 or norm.running_var is None or norm.training:
            continue
        folded[source] = folded_weights(conv, norm)
        node.replace_all_uses_with(source)
        graph_module.graph.erase_node(node)
    return folded


def _drop_identities(graph_module: torch.fx.GraphModule) -> None:
    """Route around Identity layers."""
    for node in list(graph_module.graph.nodes):
        if _module(graph_module, node, nn.Identity) is not None:
            node.replace_all_uses_with(node.args[0])
            graph_module.graph.erase_node(node)


def _call_fused_convolutions(graph_module: torch.fx.GraphModule, folded: Folded, dtype: torch.dtype) -> int:
    """Replace each zero-padded Conv2d layer by a call on `dtype` weights, fused with the ReLU (and the
    addition) that follow it where it is their only input path; the number of fused calls."""
    graph, fused = graph_module.graph, 0
    for index, node in enumerate(list(graph.nodes)):
        conv = _module(graph_module, node, nn.Conv2d)
        if conv is None or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            continue
        weight, bias = folded.get(node, (conv.weight.detach().float(), None))
        if bias is None:
            bias = torch.zeros(conv.out_channels) if conv.bias is None else conv.bias.detach().float()
        geometry = (conv.stride, conv.padding, conv.dilation, conv.groups)
        with graph.inserting_before(node):
            weight_node = _constant(graph_module, f"conv{index}_weight", weight, dtype)
            bias_node = _constant(graph_module, f"conv{index}_bias", bias, dtype)
        (user,) = node.users if len(node.users) == 1 else (None,)
        addition = user if _is_addition(user) else None
        relu = _only_relu_user(graph_module, addition or node)
        node.op, node.kwargs = "call_function", {}
        if relu is not None and addition is None:
            node.target, node.args = conv_bias_relu, (node.args[0], weight_node, bias_node, *geometry)
        elif relu is not None:
            residual = addition.args[1] if addition.args[0] is node else addition.args[0]
            node.target = conv_bias_add_relu
            node.args = (node.args[0], weight_node, residual, bias_node, *geometry)
            addition.prepend(node)  # the residual is computed by then
        else:
            node.target, node.args = torch.conv2d, (node.args[0], weight_node, bias_node, *geometry)
            continue
        relu.replace_all_uses_with(node)
        graph.erase_node(relu)
        if addition is not None:
            graph.erase_node(addition)
        fused += 1
    return fused


def _is_addition(node: torch.fx.Node | None) -> bool:
    """Whether `node` adds two graph values (x + y, x += y, torch.add(x, y))."""
    return (
        node is not None
        and node.op == "call_function"
        and node.target in _ADDITIONS
        and len(node.args) == 2
        and not node.kwargs
        and all(isinstance(arg, torch.fx.Node) for arg in node.args)
        and node.args[0] is not node.args[1]
    )


def _only_relu_user(graph_module: torch.fx.GraphModule, node: torch.fx.Node) -> torch.fx.Node | None:
    """`node`'s user if it has exactly one and that one is a ReLU layer."""
    if len(node.users) != 1:
        return None
    (user,) = node.users
    return user if _module(graph_module, user, nn.ReLU) is not None else None


def _cast_inputs(graph_module: torch.fx.GraphModule, dtype: torch.dtype) -> None:
    """Cast the graph's inputs to `dtype` where they enter it."""
    for node in list(graph_module.graph.nodes):
        if node.op != "placeholder":
            continue
        with graph_module.graph.inserting_after(node):
            cast = graph_module.graph.call_method("to", (node, dtype))
        node.replace_all_uses_with(cast, delete_user_cb=lambda user, cast=cast: user is not cast)


def _constant(graph_module: torch.fx.GraphModule, name: str, value: torch.Tensor, dtype: torch.dtype) -> torch.fx.Node:
    """A get_attr node of `value` in `dtype` (4-d: NHWC), registered on `graph_module` as buffer `name`."""
    device = next(graph_module.parameters()).device
    tensor = value.to(device, dtype)
    if tensor.dim() == 4:
        tensor = tensor.contiguous(memory_format=torch.channels_last)
    graph_module.register_buffer(name, tensor)
    return graph_module.graph.get_attr(name)


def _module(graph_module: torch.fx.GraphModule, node: object, kind: type[nn.Module]) -> nn.Module | None:
    """The layer `node` calls if it is a call of a `kind` module (that class exactly), else None."""
    if not isinstance(node, torch.fx.Node) or node.op != "call_module":
        return None
    module = graph_module.get_submodule(node.target)
    return module if type(module) is kind else None
