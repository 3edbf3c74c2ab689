"""spfde-bench core library: data, models, trainer, and the sparsity / freezing / sieving axes."""

__version__ = "0.1.0"
