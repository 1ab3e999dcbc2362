"""Hydra plugin shim, installed as ``hydra_plugins.mefnet_loso``.

Hydra only accepts plugins defined inside the ``hydra_plugins`` namespace, so the
sweeper class is declared here, as a thin subclass of the implementation in
:mod:`mefnet.experiment.sweeper`. ``conf/hydra/sweeper/loso.yaml`` selects it.
"""

from mefnet.experiment.sweeper import LosoSweeperImpl


class LosoSweeper(LosoSweeperImpl):
    """Expands ``fold=each`` into one job per subject (see :mod:`mefnet.experiment.sweeper`)."""
