import math

import pytest
import torch
from torch import nn

from project.model.nn import ACTIVATIONS, INITS, MLP, ConvNet, init_weights, make_activation, make_norm

SHAPES = [(1, 8, 8), (1, 28, 28), (3, 32, 32)]


def _layer(scheme, activation="relu", **kw):
    torch.manual_seed(0)
    layer = nn.Linear(800, 400)
    nn.init.uniform_(layer.bias, 1, 2)
    return init_weights(layer, scheme, activation=activation, **kw)


# The lecture's formulas: Xavier/Glorot Var = 2 / (n_in + n_out); He Var = 2 / ((1 + a^2) n_in).
N_IN, N_OUT = 800, 400


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu"])
def test_kaiming_normal_std_is_he_whatever_the_activation(activation):
    w = _layer("kaiming_normal", activation=activation).weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / N_IN), rel=0.02)
    assert w.mean().item() == pytest.approx(0, abs=0.002)


def test_kaiming_uses_leaky_relu_slope():
    w = _layer("kaiming_normal", activation="leaky_relu", a=0.2).weight
    assert w.var().item() == pytest.approx(2 / ((1 + 0.2**2) * N_IN), rel=0.04)


def test_kaiming_uniform_bound_gives_he_variance():
    w = _layer("kaiming_uniform").weight
    bound = math.sqrt(3 * 2 / N_IN)  # uniform(-b, b) has variance b^2 / 3
    assert w.abs().max().item() <= bound
    assert w.abs().max().item() > 0.99 * bound
    assert w.var().item() == pytest.approx(2 / N_IN, rel=0.04)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_xavier_is_glorot_with_gain_one(activation):
    w = _layer("xavier_normal", activation=activation).weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / (N_IN + N_OUT)), rel=0.02)
    bound = math.sqrt(6 / (N_IN + N_OUT))
    w = _layer("xavier_uniform", activation=activation).weight
    assert 0.99 * bound < w.abs().max().item() <= bound


def test_activation_gain_is_an_explicit_option():
    w = _layer("xavier_normal", activation="tanh", activation_gain=True).weight
    assert w.std().item() == pytest.approx(5 / 3 * math.sqrt(2 / (N_IN + N_OUT)), rel=0.02)
    w = _layer("xavier_normal", activation="relu", activation_gain=True).weight
    assert w.std().item() == pytest.approx(math.sqrt(2) * math.sqrt(2 / (N_IN + N_OUT)), rel=0.02)
    w = _layer("kaiming_normal", activation="tanh", activation_gain=True).weight
    assert w.std().item() == pytest.approx(5 / 3 / math.sqrt(N_IN), rel=0.02)


@pytest.mark.parametrize("scheme,std", [("kaiming_normal", lambda n_in, n_out: math.sqrt(1 / n_in)),
                                        ("xavier_normal", lambda n_in, n_out: math.sqrt(2 / (n_in + n_out)))])
def test_output_layer_gets_gain_one(scheme, std):
    torch.manual_seed(0)
    net = MLP((1, 40, 40), 500, hidden=[1000], init=scheme, activation_gain=True)
    hidden, logits = net.blocks[0][0].weight, net.head.weight
    assert logits.std().item() == pytest.approx(std(1000, 500), rel=0.03)
    gain = math.sqrt(2)  # relu, on the hidden layer only
    assert hidden.std().item() == pytest.approx(gain * std(1600, 1000), rel=0.03)
    conv = ConvNet((1, 8, 8), 10, widths=[8], hidden=600, init="kaiming_normal")
    assert conv.head[-1].weight.std().item() == pytest.approx(math.sqrt(1 / 600), rel=0.1)


def test_orthogonal_rows_are_orthonormal():
    w = _layer("orthogonal", gain=1.0).weight
    assert torch.allclose(w @ w.T, torch.eye(400), atol=1e-4)


def test_simple_schemes():
    assert torch.all(_layer("zeros").weight == 0)
    assert torch.all(_layer("constant", value=0.3).weight == 0.3)
    w = _layer("uniform", low=-0.2, high=0.1).weight
    assert w.min() >= -0.2 and w.max() <= 0.1 and w.min() < -0.19 and w.max() > 0.09
    w = _layer("normal", mean=0.5, std=0.1).weight
    assert w.mean().item() == pytest.approx(0.5, abs=0.002)
    assert w.std().item() == pytest.approx(0.1, rel=0.02)


@pytest.mark.parametrize("scheme", sorted(set(INITS) - {"default"}))
def test_every_scheme_zeroes_biases_and_resets_norms(scheme):
    net = nn.Sequential(nn.Linear(10, 10), nn.BatchNorm1d(10), nn.Conv2d(2, 3, 3), nn.GroupNorm(1, 3))
    for p in net.parameters():
        nn.init.uniform_(p, 1, 2)
    init_weights(net, scheme)
    assert torch.all(net[0].bias == 0) and torch.all(net[2].bias == 0)
    for norm in (net[1], net[3]):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match=r"init=he is not known; allowed: constant, default"):
        init_weights(nn.Linear(2, 2), "he")
    with pytest.raises(ValueError, match=r"norm=weight is not known; allowed: batch, group, instance, layer, none$"):
        make_norm("weight", 4)
    with pytest.raises(ValueError, match=r"activation=swish is not known; allowed: elu, gelu"):
        make_activation("swish")
    with pytest.raises(ValueError, match=r"init_kwargs.sd=1.0 is not a setting; allowed: a, gain"):
        init_weights(nn.Linear(2, 2), "normal", sd=1.0)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_build(name):
    assert make_activation(name)(torch.linspace(-2, 2, 5)).shape == (5,)


# (norm, axes that are normalized together for each retained index)
MAP_NORMS = [("batch", (0, 2, 3)), ("layer", (1, 2, 3)), ("instance", (2, 3))]


@pytest.mark.parametrize("name,axes", MAP_NORMS)
def test_feature_map_norms_normalize_the_right_axes(name, axes):
    torch.manual_seed(0)
    x = torch.randn(6, 8, 5, 5) * torch.arange(1, 9).view(1, 8, 1, 1) + 3
    y = make_norm(name, 8, dim=2).train()(x)
    assert torch.allclose(y.mean(dim=axes), torch.zeros(1), atol=1e-5)
    assert torch.allclose(y.var(dim=axes, unbiased=False), torch.ones(1), atol=1e-3)


def test_group_norm_normalizes_each_group_of_each_sample():
    torch.manual_seed(0)
    x = torch.randn(6, 8, 5, 5) * torch.arange(1, 9).view(1, 8, 1, 1) + 3
    y = make_norm("group", 8, dim=2, groups=4)(x).view(6, 4, 2 * 25)
    assert torch.allclose(y.mean(dim=2), torch.zeros(6, 4), atol=1e-5)
    assert torch.allclose(y.var(dim=2, unbiased=False), torch.ones(6, 4), atol=1e-3)
    # and not over the whole sample: groups have different raw scales, each is normalized alone
    flat = make_norm("group", 8, dim=1, groups=2)(torch.randn(6, 8) * 5 + 1).view(6, 2, 4)
    assert torch.allclose(flat.mean(dim=2), torch.zeros(6, 2), atol=1e-5)


def test_flat_norms():
    x = torch.randn(16, 6) * 4 + 2
    assert torch.allclose(make_norm("batch", 6, dim=1)(x).mean(dim=0), torch.zeros(6), atol=1e-5)
    assert torch.allclose(make_norm("layer", 6, dim=1)(x).mean(dim=1), torch.zeros(16), atol=1e-5)
    assert isinstance(make_norm("none", 6, dim=1), nn.Identity)


def test_norm_errors_say_what_to_use():
    with pytest.raises(ValueError, match="norm=instance normalizes.*allowed: layer, batch, group or none"):
        make_norm("instance", 8, dim=1)
    with pytest.raises(ValueError, match="norm_groups=3 does not divide a layer of 8 features; allowed: a positive divisor"):
        make_norm("group", 8, groups=3)


def test_dropout_active_in_train_identity_in_eval():
    net = MLP((1, 4, 4), 3, hidden=[64], norm="none", dropout=0.5)
    x = torch.randn(32, 1, 4, 4)
    net.train()
    assert not torch.equal(net(x), net(x))
    net.eval()
    assert torch.equal(net(x), net(x))
    dropped = (net.blocks[0][3].train()(torch.ones(1000)) == 0).float().mean().item()
    assert dropped == pytest.approx(0.5, abs=0.06)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("net_class", [ConvNet, MLP])
@pytest.mark.parametrize("norm", ["batch", "layer", "instance", "group", "none"])
def test_networks_train_on_each_shape(net_class, shape, norm):
    if net_class is MLP and norm == "instance":
        pytest.skip("instance norm needs feature maps")
    torch.manual_seed(0)
    net = net_class(shape, 10, norm=norm, norm_groups=2)
    x, y = torch.randn(4, *shape), torch.randint(0, 10, (4,))
    logits = net(x)
    assert logits.shape == (4, 10)
    before = [p.detach().clone() for p in net.parameters()]
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    nn.functional.cross_entropy(logits, y).backward()
    optimizer.step()
    changed = [not torch.equal(b, p) for b, p in zip(before, net.parameters())]
    assert all(changed)


@pytest.mark.parametrize("kwargs,message", [
    (dict(dropout=1.0), r"dropout=1.0; allowed: a number in \[0, 1\)"),
    (dict(dropout=-0.1), r"dropout=-0.1; allowed: a number in \[0, 1\)"),
    (dict(widths=[]), r"widths=\[\]; allowed: a non-empty list of positive integers"),
    (dict(widths=[16, 0]), r"widths=\[16, 0\]; allowed"),
    (dict(norm="group", norm_groups=5), "norm_groups=5 does not divide"),
    (dict(init="glorot"), "init=glorot is not known"),
])
def test_convnet_rejects_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConvNet((1, 8, 8), 10, **kwargs)


def test_mlp_rejects_bad_widths():
    with pytest.raises(ValueError, match=r"hidden=\[-5\]; allowed"):
        MLP((1, 8, 8), 10, hidden=[-5])


def test_a_norm_added_to_the_registry_is_initialized_and_replaces_the_bias(monkeypatch):
    # one line in NORMS is all a new norm needs: torch's RMSNorm has a scale but no shift, so the conv keeps its bias
    import project.model.nn as nets

    monkeypatch.setitem(nets.NORMS, "rms", lambda features, dim, groups: nn.RMSNorm([features, 1, 1] if dim == 2
                                                                                     else [features]))
    net = ConvNet((1, 8, 8), 3, widths=[4], hidden=0, norm="rms")
    conv = net.blocks[0][0]
    assert conv.bias is not None  # RMSNorm shifts nothing: the conv keeps its bias
    with_shift = ConvNet((1, 8, 8), 3, widths=[4], hidden=0, norm="batch")
    assert with_shift.blocks[0][0].bias is None and torch.equal(with_shift.blocks[0][1].weight, torch.ones(4))
