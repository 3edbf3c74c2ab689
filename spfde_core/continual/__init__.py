"""Continual learning on the trainer (docs/continual.md): task splits, rehearsal, SparCL's DDR and DGM.

Kept import-free: ``spfde_core.config`` imports ``continual.config`` and must not pull the trainer in.
The harness is a set of trainer callbacks (``continual.callbacks``), built by ``run_training``.
"""
