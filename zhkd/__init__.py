"""zhkd: soft-label datasets for Chinese knowledge distillation, and small students trained from them.

One import name, four parts: this core (the task table `zhkd.tasks`, the shard format `zhkd.shards`,
errors, models, the `zhkd` command), and `zhkd.augment`, `zhkd.pipelines`, `zhkd.distill`. In the
repository those three keep the root folders the layout asks for (`augment/`, `pipelines/`,
`distill/`); an installed wheel holds them inside `zhkd/`. In a source checkout this package's path
also names the checkout's root, so `zhkd.augment` is the `augment/` beside this folder, in that same
checkout: a second working tree (or a `PYTHONPATH` pointing at one) never mixes its core with another
tree's stages. Importing zhkd stays light: no torch, no Beam.
"""

from pathlib import Path as _Path

_CHECKOUT = _Path(__file__).resolve().parent.parent
if (_CHECKOUT / "pyproject.toml").is_file() and (_CHECKOUT / "augment" / "__init__.py").is_file():
    __path__.append(str(_CHECKOUT))  # noqa: F821 - the package's own path, extended for the source layout
