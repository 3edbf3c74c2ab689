"""Training cost: analytic FLOPs per step from the live state, the memory model, prediction.

- ``CostMeter`` (``meter.py``): the callback adding per-epoch FLOPs to the log and the ``cost``
  block to the run record;
- ``predict_cost(cfg)`` / ``format_cost_table(report)`` (``predict.py``): the cost of a
  configuration without training (the ``spfde cost`` command);
- ``layers.py`` (ops recorded once on the meta device), ``flops.py`` (per-op counts), ``memory.py``
  (fp32 memory model, measured peak). Conventions: ``docs/cost.md``.
"""

from spfde_core.cost.flops import Split, op_flops, sample_flops, sample_macs
from spfde_core.cost.layers import ModelProfile, OpInfo, profile_model
from spfde_core.cost.memory import MemoryBreakdown, measured_peak, memory_model
from spfde_core.cost.meter import CostMeter, active_counts
from spfde_core.cost.predict import CostReport, LayerRow, format_cost_table, predict_cost

__all__ = [
    "CostMeter",
    "CostReport",
    "LayerRow",
    "MemoryBreakdown",
    "ModelProfile",
    "OpInfo",
    "Split",
    "active_counts",
    "format_cost_table",
    "measured_peak",
    "memory_model",
    "op_flops",
    "predict_cost",
    "profile_model",
    "sample_flops",
    "sample_macs",
]
