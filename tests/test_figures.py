"""The docs' figures (project/figures.py): renderers by hand, and the own-problem page's files as
the page shows them (make docs and tests/test_own_problem.py write them from there)."""

import json

from project import figures


def test_summary_rendered_by_hand():
    output = "Epoch 1 ...\nRun summary\n-----------\ntest accuracy       0.9861\n\nDiagnosis\nnext      nothing\ntrailing\n"
    assert figures.render_train([output]) == ("    Run summary\n    -----------\n    test accuracy       0.9861\n\n"
                                              "    Diagnosis\n    next      nothing\n")


def test_the_power_table_by_hand():
    design = {"false_discovery_rate": 0.0257, "any_false": 0.28, "decided": 17.29, "seeds": 145.9}
    result = {"pages": 100, "claims": 19, "conclusions": "docs/lab/conclusions.json",
              "designs": {"previous": {**design, "decided": 11.71}, "fwer": design, "fdr": design},
              "previous_on_former_figures": {"decided": 11.33, "seeds": 148.1}}
    text = figures.render_power([json.dumps(result)])
    assert "| this design (default): the false discovery rate | 17.3 | 145.9 | 0.026 | 0.280 |" in text
    assert "| the previous page: two-sided, Bonferroni over claims x looks | 11.7 |" in text
    assert "decides 11.3" in text


def test_the_own_problem_pages_files():
    files = figures.own_files()
    assert set(files) == {"my_nets.py", "baseline.yaml", "augment.yaml", "claims.yaml"}
    assert "class SmallCNN" in files["my_nets.py"] and "baseline: baseline.yaml" in files["claims.yaml"]
    assert figures.own_command().startswith("python -m project.lab --until-decided --claims claims.yaml")
