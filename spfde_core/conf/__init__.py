"""Hydra config tree of spfde (packaged so `spfde` finds it after pip install)."""
