"""A network's settings are its own class's.

jsonargparse (through Lightning's CLI) does two things a user of their own network does not expect:

- When ``--model.net`` changes the class, it keeps every setting of the previous class (the default
  config's ConvNet) that the new class also names: a user's ``width`` or ``dropout`` silently became
  ConvNet's 1.0 or 0.1 instead of the user's own default. Here a class change of the network starts
  from the new class's defaults; only what is set after it applies. (Optimizers and schedulers keep
  jsonargparse's carrying over, which the experiments' configs rely on: ``--model.optimizer=SGD``
  keeps the learning rate.)
- ``--model.net.help my_pkg.Net`` listed ``input_shape`` and ``num_classes``, which the data fills
  in; the help now lists the constructor's other parameters, the ones a user sets.
"""

from __future__ import annotations

import inspect

from jsonargparse import _typehints
from torch import nn

FILLED_BY_THE_DATA = {"input_shape", "num_classes"}
_carry_over = _typehints.discard_init_args_on_class_path_change


def _is_network(class_path) -> bool:
    try:
        target = _typehints.import_object(class_path)
    except Exception:
        return False
    return inspect.isclass(target) and issubclass(target, nn.Module)


def _start_from_the_new_class(parser_or_action, prev_val, value) -> None:
    spec = _typehints.subclass_spec_as_namespace(prev_val)  # the same object, changed in place
    changed = (spec is not None and spec.get("init_args") and value is not None and value.get("class_path")
               and spec.get("class_path") != value["class_path"])
    if changed and _is_network(spec["class_path"]):
        for key, _ in list(spec.init_args.items(branches=True, nested=False)):
            spec.init_args.pop(key)
        return
    _carry_over(parser_or_action, prev_val, value)


def install(parser) -> None:
    """Called once the model's arguments are on ``parser`` (ProjectCLI.add_arguments_to_parser)."""
    _typehints.discard_init_args_on_class_path_change = _start_from_the_new_class
    help_action = parser._option_string_actions.get("--model.net.help")
    if help_action is not None:  # an instance attribute: the class's own dict is shared by every help
        skip = set(help_action.sub_add_kwargs.get("skip", ())) | FILLED_BY_THE_DATA
        help_action.sub_add_kwargs = {**help_action.sub_add_kwargs, "skip": skip}
