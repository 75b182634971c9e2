"""A claims file: the claims a study decides, the baseline they are measured against, and the
learning-rate grid of the claims that compare arms at their own rates. Every entry is checked
before any run: a mistake is one line naming the entry, the value and what is allowed.

    baseline: baseline.yaml            # optional: a config file beside this one, or inline settings
    tune:                              # optional: the grid of the claims with tune: true
      setting: model.optimizer.init_args.lr
      values: [0.001, 0.00316, 0.01, 0.0316, 0.1]
      by: val_acc                      # chosen on validation data; the test split stays unseen
    claims:
      - {claim: "Dropout lowers variance", experiment: dropout, metric: unused_gap, expect: lower}
      - {claim: "Momentum speeds up SGD", experiment: opt_momentum, against: opt_sgd, metric: unseen_acc,
         expect: higher, tune: true}
      - {claim: "L1 makes zeros", experiment: l1, metric: zero_fraction, expect: higher, margin: 0.05}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from project.errors import fail, is_finite_number, is_integer
from project.lab import experiments
from project.lab.experiments import BASELINE, Baseline
from project.run.cli import CONFIG_DIR

CLAIMS_FILE = CONFIG_DIR / "lab" / "lecture.yaml"

EXPECT = ("lower", "higher", "same")
# The figures a claim can be about (results.csv's, of the tested weights), and which way is better
# (the probability of improvement counts the seeds that move that way).
FIGURES = {
    "test_acc": ("test accuracy", 1), "unseen_acc": ("unseen accuracy (test split + unused training images)", 1),
    "gap": ("variance (gap: clean train - val accuracy)", -1), "variance": ("variance (gap)", -1),
    "unused_gap": ("variance (clean train - unused training images' accuracy)", -1),
    "bias": ("bias (1 - clean train accuracy)", -1), "train_acc": ("clean train accuracy", 1),
    "val_acc": ("val accuracy", 1), "best_val_acc": ("best val accuracy", 1),
    "unused_acc": ("accuracy on the unused training images", 1),
    "zero_fraction": ("fraction of weights exactly 0", 1), "weight_norm": ("weight L2 norm", -1)}
TUNED_BY = ("val_acc", "best_val_acc")  # validation figures only: a choice never sees the test split
KEYS = ("claim", "experiment", "metric", "expect", "against", "margin", "max_seeds", "tune")


@dataclass(frozen=True)
class Claim:
    """One lecture claim: ``experiment`` minus ``against`` on ``metric``; ``expect`` is what the
    lecture predicts (lower, higher, or same: no effect beyond the margin). ``margin`` and
    ``max_seeds`` replace the study's for this claim; ``tune``: both arms at their own learning rate."""
    claim: str
    experiment: str
    metric: str
    expect: str
    against: str = BASELINE
    margin: float | None = None
    max_seeds: int | None = None
    tune: bool = False


@dataclass(frozen=True)
class Tuning:
    """A tuned arm's grid: on each seed the arm runs at every value of ``setting`` and keeps the run
    with the best ``by`` (a validation figure; the first value on a tie)."""
    setting: str
    values: tuple
    by: str = "val_acc"

    def points(self, arm: str) -> list[str]:
        return [f"{arm}+{self.setting}={v}" for v in self.values]

    def value_of(self, point: str):
        return self.values[[str(v) for v in self.values].index(point.rsplit("=", 1)[1])]


@dataclass(frozen=True)
class ClaimsFile:
    claims: list[Claim]
    baseline: Baseline | None = None  # None: the study's (configs/experiment/baseline.yaml or --baseline)
    tune: Tuning | None = None
    root: Path = field(default_factory=Path.cwd)  # the folder its file names are relative to


def load(path: str | Path) -> ClaimsFile:
    """The claims of a YAML file, each checked before any run."""
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        fail("--claims", path, "a YAML file of claims such as configs/lab/lecture.yaml", "is not a file")
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        fail("--claims", path, "valid YAML", f"does not parse: {str(err).splitlines()[0]}")
    entries = content.get("claims") if isinstance(content, dict) else None
    if not isinstance(entries, list) or not entries:
        fail("--claims", path, "a file with a non-empty list under `claims:`")
    extra = sorted(set(content) - {"claims", "baseline", "tune"})
    if extra:
        fail("--claims", path, "the keys claims, baseline and tune", f"has {', '.join(map(str, extra))}")
    root = path.resolve().parent
    baseline = _baseline(content["baseline"], root) if content.get("baseline") is not None else None
    tune = _tuning(content["tune"]) if content.get("tune") is not None else None
    claims: list[Claim] = []
    for i, entry in enumerate(entries):
        claims.append(_claim(entry, f"claims[{i}]", root, tune, claims, path.name))
    return ClaimsFile(claims, baseline, tune, root)


def _claim(entry, where: str, root: Path, tune: Tuning | None, before: list[Claim], file: str) -> Claim:
    if not isinstance(entry, dict):
        fail(where, entry, "a mapping with claim, experiment, metric and expect")
    missing = [k for k in ("claim", "experiment", "metric", "expect") if k not in entry]
    extra = sorted(set(entry) - set(KEYS))
    if missing or extra:
        fail(where, entry, f"the keys claim, experiment, metric, expect and (optional) {', '.join(KEYS[4:])}",
             f"lacks {', '.join(missing)}" if missing else f"has {', '.join(map(str, extra))}")
    fields = {k: str(entry[k]) for k in ("claim", "experiment", "metric", "expect", "against") if k in entry}
    claim = Claim(**fields)
    for key in ("experiment", "against"):
        experiments.check(getattr(claim, key), f"{where}.{key}", root, f"{file}'s folder")
    if claim.experiment == claim.against:
        fail(f"{where}.against", claim.against, "an experiment other than the claim's own")
    if claim.metric not in FIGURES:
        fail(f"{where}.metric", claim.metric, ", ".join(FIGURES))
    if claim.expect not in EXPECT:
        fail(f"{where}.expect", claim.expect, ", ".join(EXPECT))
    margin, max_seeds, tuned = entry.get("margin"), entry.get("max_seeds"), entry.get("tune", False)
    if margin is not None and not (is_finite_number(margin) and not isinstance(margin, bool) and 0 < margin < 1):
        fail(f"{where}.margin", margin, "a number in (0, 1): the smallest difference that matters for this claim")
    if max_seeds is not None and not (is_integer(max_seeds) and max_seeds >= 2):
        fail(f"{where}.max_seeds", max_seeds, "an integer >= 2")
    if not isinstance(tuned, bool):
        fail(f"{where}.tune", tuned, "true or false")
    if tuned and tune is None:
        fail(f"{where}.tune", tuned, "a claims file with a `tune:` block (setting, values, by) for it to use")
    claim = Claim(**fields, margin=None if margin is None else float(margin), max_seeds=max_seeds, tune=tuned)
    if any((c.experiment, c.against, c.metric, c.tune) == (claim.experiment, claim.against, claim.metric, claim.tune)
           for c in before):
        fail(where, claim.claim, "each comparison once", f"repeats {claim.experiment} vs {claim.against} on {claim.metric}")
    return claim


def _baseline(value, root: Path) -> Baseline:
    if isinstance(value, dict):
        return Baseline(files=(), inline=experiments.inline_baseline(value), source="inline settings of the claims file",
                        flags=experiments.placed(root / "claims.yaml", value))
    if not isinstance(value, str) or not value.strip():
        fail("baseline", value, "a config file relative to the claims file (baseline.yaml) or a mapping of settings")
    import yaml

    path = experiments.resolve(value, root)
    experiments.check_config_file("baseline", path, value)
    return Baseline(files=(str(path),), source=value, flags=experiments.placed(path, yaml.safe_load(path.read_text())))


def _tuning(value) -> Tuning:
    allowed = "a mapping {setting: model.optimizer.init_args.lr, values: [0.001, 0.01, ...], by: val_acc}"
    if not isinstance(value, dict) or set(value) - {"setting", "values", "by"} or not {"setting", "values"} <= set(value):
        fail("tune", value, allowed)
    setting, values, by = value["setting"], value["values"], value.get("by", "val_acc")
    if not isinstance(setting, str) or "=" in setting or not setting.strip():
        fail("tune.setting", setting, "a setting's name, e.g. model.optimizer.init_args.lr")
    if not isinstance(values, list) or len(values) < 2 or len({str(v) for v in values}) < len(values):
        fail("tune.values", values, "a list of at least 2 different values")
    if by not in TUNED_BY:
        fail("tune.by", by, f"a validation figure: {', '.join(TUNED_BY)} (the test split is never used for a choice)")
    return Tuning(setting.strip(), tuple(values), by)
