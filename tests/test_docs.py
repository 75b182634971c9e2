"""The figures in README.md and docs/ (project/docs.py): each block is what its stored sources
render (so a hand edit fails), and every number in it comes from those sources. The renderers
themselves: tests/test_figures.py."""

import re
import shutil

import pytest

from project import docs

# A figure's numbers as a reader sees them (60,000 with its thousands commas), and a source's as
# a program wrote them (a CSV's commas separate fields; 5.4e-06).
SHOWN = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.])\d+(?:\.\d+)?(?![\w])")
WRITTEN = re.compile(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _numbers(text: str) -> list[str]:
    return [n.replace(",", "") for n in SHOWN.findall(text)]


def _comes_from(number: str, source_numbers: list[float]) -> bool:
    """``number`` is a source number as written, or one rounded to the block's decimals."""
    decimals = len(number.partition(".")[2])
    value = float(number)
    return any(round(abs(s), decimals) == value for s in source_numbers)


def _unexplained(block: str, sources: list[str]) -> list[str]:
    found = [float(n) for text in sources for n in (*WRITTEN.findall(text), *_numbers(text))]
    return [n for n in _numbers(block) if not _comes_from(n, found)]


def test_every_block_is_what_its_sources_render():
    assert docs.check() == []


def test_every_page_shows_figures_and_every_figure_stands_somewhere():
    shown = {name for names in docs.page_figures().values() for name in names}
    assert shown == set(docs.FIGURES)
    assert {"train", "seeds", "lab-time", "search-time"} <= set(docs.page_figures()["README.md"])


@pytest.mark.parametrize("name", sorted(docs.FIGURES))
def test_every_number_in_a_figure_comes_from_its_sources(name):
    block, sources = docs.rendered(name), docs.sources(name)
    assert _numbers(block), f"figure {name} shows no number"
    # after "so the default": the search's default trial count and an estimate computed from the figures
    missing = _unexplained(block.split("so the default")[0].split("take about")[0], sources)
    assert not missing, f"figure {name}: {missing} appear in none of {docs.FIGURES[name].sources}"


def test_the_number_check_catches_a_number_from_nowhere():
    assert _unexplained("test accuracy 0.9917 after epoch 30", ["test/acc 0.99166 epochs 30"]) == []
    assert _unexplained("test accuracy 0.9917 after epoch 31", ["test/acc 0.99166 epochs 30"]) == ["31"]


@pytest.fixture
def copy_of_the_docs(tmp_path, monkeypatch):
    shutil.copy(docs.ROOT / "README.md", tmp_path / "README.md")
    shutil.copytree(docs.ROOT / "docs", tmp_path / "docs")
    monkeypatch.setattr(docs, "ROOT", tmp_path)
    return tmp_path


def test_a_block_edited_by_hand_is_named(copy_of_the_docs):
    readme = copy_of_the_docs / "README.md"
    text = readme.read_text()
    accuracy = re.search(r"test accuracy\s+(\d\.\d{4})", text).group(1)
    readme.write_text(text.replace(f"test accuracy       {accuracy}", "test accuracy       0.9999", 1))
    assert docs.check() == [
        "README.md: figure train differs from what docs/figures/train_seed0.txt render; run `make docs PAGE=train` "
        "(or `--render` after editing a renderer), never edit it by hand"]
    docs.main(["--render"])
    assert docs.check() == [] and readme.read_text() == text


def test_new_sources_rewrite_the_block(copy_of_the_docs):
    source = copy_of_the_docs / "docs" / "figures" / "train_seed0.txt"
    source.write_text(source.read_text().replace("test accuracy       0.", "test accuracy       1.", 1))
    assert len(docs.check()) == 2  # train and seeds both read seed 0's run
    docs.main(["--render"])
    assert docs.check() == [] and "test accuracy       1." in (copy_of_the_docs / "README.md").read_text()


def test_an_unknown_page_is_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        docs.main(["--page", "nope", "--render"])
    assert str(stop.value).startswith("error: PAGE=nope is not a page or a figure; allowed: bench, checkpoints,")
