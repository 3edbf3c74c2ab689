"""Hydra configs of `spfde board sweep` (``spfde_core.board.sweep``): the job config and launcher presets."""
