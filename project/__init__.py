"""A PyTorch Lightning template for experimenting with training techniques."""

import warnings

# Lightning's own use of torch's pytree, deprecated there: not something a user can act on, and
# printed by every entry point (fit, bench, compare, search), so it is silenced once, here.
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
