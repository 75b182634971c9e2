"""The one-line error: its form, the registry lookup, and jsonargparse's and argparse's reports rewritten."""

import pytest

from project.errors import ArgumentParser, SettingError, choice, from_line, one_line_parse_error


def test_the_one_form_and_one_level_down():
    err = SettingError("norm", "weight", "batch, none", "is not known")
    assert str(err) == "norm=weight is not known; allowed: batch, none"
    assert str(err.within("model.net")) == "model.net.norm=weight is not known; allowed: batch, none"
    assert str(SettingError("widths", (1, 2), "a list")) == "widths=[1, 2]; allowed: a list"  # no empty why


def test_choice_lists_the_registry_sorted_and_suggests_the_nearest():
    assert choice({"b": 2, "a": 1}, "x", "a") == 1
    with pytest.raises(SettingError, match=r"^x=bb is not known \(did you mean b\?\); allowed: a, b$"):
        choice({"b": 2, "a": 1}, "x", "bb")


def test_a_printed_line_reads_back_as_its_error():
    err = from_line("error: data.batch_size=0; allowed: an integer >= 1")
    assert (err.setting, err.value, err.allowed) == ("data.batch_size", "0", "an integer >= 1")


# One case of each jsonargparse phrase errors.py reads (jsonargparse 4.x, pinned in pyproject.toml).
@pytest.mark.parametrize("message,line", [
    ("unrecognized arguments: --model.nonsense=1",
     "model.nonsense=1 is not a setting; allowed: the keys `project fit --print_config` shows"),
    ('Parser key "trainer": Problem with given class_path: Parser key "max_epochs": Expected a <class \'int\'>. '
     "Got value: ten", "trainer.max_epochs=ten is not valid; allowed: an integer"),
    ('Parser key "model.scheduler": the following arguments are required: step_size. class_path=\'torch.optim.'
     "lr_scheduler.StepLR'", "model.scheduler.step_size=null is missing: it is required by StepLR; allowed: a value, "
     "e.g. --model.scheduler.step_size=..."),
])
def test_jsonargparse_reports_become_one_line(message, line):
    assert one_line_parse_error(message) == line


@pytest.mark.parametrize("argv,line", [
    (["--jobs", "abc"], "error: --jobs=abc; allowed: an integer"),
    (["--mode", "cubic"], "error: --mode=cubic is not known; allowed: a, b"),
    (["--nope=3"], "error: --nope=3 is not a flag; allowed: the flags `tool --help` shows"),
])
def test_argparse_errors_are_one_line_with_exit_code_2(capsys, argv, line):
    parser = ArgumentParser(prog="tool")
    parser.add_argument("--jobs", type=int)
    parser.add_argument("--mode", choices=("a", "b"))
    with pytest.raises(SystemExit) as done:
        parser.parse_args(argv)
    assert done.value.code == 2 and capsys.readouterr().err.strip() == line


def test_a_class_path_that_does_not_import_says_which_module_and_why(tmp_path, monkeypatch):
    from project.errors import import_problem

    (tmp_path / "own_nets.py").write_text("import a_package_that_is_not_installed\n")
    (tmp_path / "good_nets.py").write_text("class TinyNet:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_problem("nowhere_pkg.nets.TinyNet") == (
        " (importing nowhere_pkg.nets failed: ModuleNotFoundError: No module named 'nowhere_pkg'; the module must be "
        "importable: run from the folder that holds it with PYTHONPATH=. or pip install -e your package)")
    assert "No module named 'a_package_that_is_not_installed'" in import_problem("own_nets.TinyNet")
    assert import_problem("good_nets.TinyNte") == " (good_nets has no TinyNte; did you mean TinyNet?)"
    assert import_problem("good_nets.TinyNet") == ""


def test_an_unknown_subcommand_is_one_line_naming_it_and_the_ones_there_are(capsys):
    from project.run.cli import main

    with pytest.raises(SystemExit) as done:
        main(["fitt", "--trainer.max_epochs=1"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("error: subcommand=fitt is not known") and "allowed: fit, validate, test, predict" in err


@pytest.mark.parametrize("argv,key,value", [
    (["--model.net.init_args.dropout=0.3"], "model.net.dropout", "0.3"),
    (["--model.net.dropout", "0.3", "--model.net.dropout=0.4"], "model.net.init_args.dropout", "0.4"),  # the last
    (["--config", "{model: {net: {class_path: my.Net}}}"], "model.net", "my.Net"),
    (["--config", "FILE", "--model.net.init_args.widths=[1]"], "model.net.widths", "[1]"),
    (["--config", "FILE"], "model.net.widths", "[8, 16]"),
    (["--config", "FILE"], "data.batch_size", None),
])
def test_given_value_reads_flags_and_config_files_as_written(tmp_path, argv, key, value):
    from project.errors import given_value

    (tmp_path / "c.yaml").write_text("model:\n  net:\n    class_path: project.nn.ConvNet\n"
                                     "    init_args: {widths: [8, 16]}\n")
    argv = [str(tmp_path / "c.yaml") if a == "FILE" else a for a in argv]
    assert given_value(key, argv) == value
