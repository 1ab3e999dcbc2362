"""Generic helpers at the bottom of the package; they import nothing else of mefnet.

:mod:`~mefnet.utils.files` (files written whole, JSON records), :mod:`~mefnet.utils.locks`
(locks between processes), :mod:`~mefnet.utils.quiet` (console output),
:mod:`~mefnet.utils.testing_seam` (the one test seam) and :mod:`~mefnet.utils.metrics` (the F1
formula)."""
