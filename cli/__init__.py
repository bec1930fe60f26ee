"""edgeadapt.cli: the ``edgeadapt`` command line, the only code above ``edgeadapt.export`` (imports flow
format <- runtime <- sdk <- export <- cli).

- ``app``: the parser and ``main``; ``common``: argument types, data and distributed options, ``--import`` of
  user modules and the ``edgeadapt.plugins`` entry points, logging;
- one module per command: ``pretrain``, ``train``, ``evaluate`` (``edgeadapt eval``), ``export``, ``continual``,
  ``import_weights`` (``edgeadapt import-weights``);
- ``__main__``: ``python -m edgeadapt.cli`` (what ``torchrun`` launches).
"""

from .app import build_parser, main

__all__ = ["build_parser", "main"]
