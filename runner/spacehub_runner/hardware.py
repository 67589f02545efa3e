"""Hardware flavors: the table lives in the control plane (`spacehub.hardware`), which lists them to clients too."""

from spacehub.hardware import DEFAULT_FLAVOR, HUB_FLAVORS, Flavor, flavor, flavors

__all__ = ["DEFAULT_FLAVOR", "HUB_FLAVORS", "Flavor", "flavor", "flavors"]
