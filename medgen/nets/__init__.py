"""Networks: thin adapters over MONAI nets to medgen's one contract ``net(x, t, cond=None)``."""
