"""A claims file (project/lab/claims.py): the shipped lecture, and every mistake in a file of one's
own as one line naming the entry, before any run."""

import pytest

from project.errors import SettingError
from project.lab.claims import CLAIMS_FILE, load
from project.lab.decide import experiments_of


def test_the_shipped_claims_answer_the_lecture():
    file = load(CLAIMS_FILE)
    claims = file.claims
    assert len(claims) == 19 and file.baseline is None
    named = {c.experiment for c in claims} | {c.against for c in claims}
    for technique in ("l1", "l2", "weight_decay", "dropout", "early_stopping", "augment", "batchnorm", "groupnorm",
                      "init_zeros", "init_constant", "init_xavier_normal", "opt_sgd", "opt_momentum", "sched_cosine",
                      "data.train_size=1000", "model.net.init_args.width=0.25", "penalty.l2=0.05"):
        assert technique in named
    assert {c.metric for c in claims if c.experiment == "l1"} == {"zero_fraction", "unseen_acc"}
    tuned = [c for c in claims if c.tune]
    assert {c.experiment for c in tuned} == {"opt_sgd", "opt_momentum", "sched_cosine"} and file.tune.by == "val_acc"
    names = experiments_of(claims, file.tune)
    assert names[0] == "baseline" and len(set(names)) == len(names)
    assert "opt_sgd+model.optimizer.init_args.lr=0.1" in names and "opt_sgd" not in names  # a tuned arm: its grid


BAD_CLAIMS = [
    ("claims: []", "--claims"),
    ("claims: [{claim: x, experiment: nope, metric: gap, expect: lower}]", "claims[0].experiment=nope"),
    ("claims: [{claim: x, experiment: l2, against: nope, metric: gap, expect: lower}]", "claims[0].against=nope"),
    ("claims: [{claim: x, experiment: l2, metric: gapp, expect: lower}]", "claims[0].metric=gapp"),
    ("claims: [{claim: x, experiment: l2, metric: gap, expect: less}]", "claims[0].expect=less"),
    ("claims: [{claim: x, experiment: l2, metric: gap}]", "lacks expect"),
    ("claims: [{claim: x, experiment: l2, metric: gap, expect: lower, seeds: 3}]", "has seeds"),
    ("claims: [{claim: x, experiment: l2, against: l2, metric: gap, expect: lower}]", "claims[0].against=l2"),
    ("claims:\n - {claim: x, experiment: l2, metric: gap, expect: lower}\n - {claim: y, experiment: l2, metric: gap, "
     "expect: higher}", "claims[1]=y"),
    ("claims: [oops", "does not parse"),
    ("claims: [{claim: x, experiment: l2, metric: gap, expect: lower, margin: 0}]", "claims[0].margin=0"),
    ("claims: [{claim: x, experiment: l2, metric: gap, expect: lower, max_seeds: 1}]", "claims[0].max_seeds=1"),
    ("claims: [{claim: x, experiment: l2, metric: gap, expect: lower, tune: true}]", "a `tune:` block"),
    ("tune: {setting: model.optimizer.init_args.lr, values: [0.1]}\nclaims: [{claim: x, experiment: l2, metric: gap, "
     "expect: lower}]", "tune.values=[0.1]"),
    ("tune: {setting: model.optimizer.init_args.lr, values: [0.1, 0.01], by: test_acc}\nclaims: [{claim: x, "
     "experiment: l2, metric: gap, expect: lower}]", "tune.by=test_acc"),
    ("baseline: nowhere.yaml\nclaims: [{claim: x, experiment: l2, metric: gap, expect: lower}]", "baseline=nowhere.yaml"),
    ("baseline: notes.txt\nclaims: [{claim: x, experiment: l2, metric: gap, expect: lower}]", "baseline=notes.txt"),
    ("baseline: [1, 2]\nclaims: [{claim: x, experiment: l2, metric: gap, expect: lower}]", "baseline=[1, 2]"),
    ("baselines: b.yaml\nclaims: [{claim: x, experiment: l2, metric: gap, expect: lower}]", "has baselines"),
    ("claims: [{claim: x, experiment: notes.yaml, metric: gap, expect: lower}]", "holds a YAML str"),
]


@pytest.mark.parametrize("text,named", BAD_CLAIMS, ids=[n for _, n in BAD_CLAIMS])
def test_a_bad_claims_file_is_one_line_naming_the_entry(tmp_path, text, named):
    (tmp_path / "notes.txt").write_text("some notes\n")
    (tmp_path / "notes.yaml").write_text("just a sentence\n")
    path = tmp_path / "claims.yaml"
    path.write_text(text)
    with pytest.raises(SettingError) as error:
        load(path)
    assert named in str(error.value) and "\n" not in str(error.value)


def test_a_claims_file_names_its_own_baseline_and_files_beside_it(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "baseline.yaml").write_text("data: {train_size: 100}\n")
    (tmp_path / "mine" / "drop.yaml").write_text("model: {net: {init_args: {dropout: 0.5}}}\n")
    path = tmp_path / "mine" / "claims.yaml"
    path.write_text("baseline: baseline.yaml\nclaims:\n - {claim: x, experiment: drop.yaml, metric: gap, expect: lower, "
                    "margin: 0.02}\n")
    file = load(path)
    assert file.baseline.files == (str(tmp_path / "mine" / "baseline.yaml"),) and file.baseline.source == "baseline.yaml"
    assert file.root == tmp_path / "mine" and file.claims[0].margin == 0.02
    path.write_text("baseline: {data: {train_size: 100}}\nclaims:\n - {claim: x, experiment: dropout, metric: gap, "
                    "expect: lower}\n")
    assert load(path).baseline.inline == '{"data": {"train_size": 100}}'
