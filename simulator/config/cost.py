"""Which price a run's cost stands on: the chip bought (amortised, plus its energy) or rented by the hour, and
where each number came from (the scenario's `cost:` section or the chip's catalog `price:`).

`cost.prefer: auto` takes purchase when a purchase price is known and the chip has power figures, else rent.
An explicit `rent` or `purchase` never falls back: a scenario asking for a basis it has no number for is
refused with one line saying which key to set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from simulator.config.cluster import ChipSpec
from simulator.config.scenario import CostSpec
from simulator.errors import ScenarioError


@dataclass(frozen=True)
class CostBasis:
    """`basis` None: the run has no cost, `reason` says why."""
    basis: Literal["rent", "purchase"] | None
    purchase_usd: float | None
    purchase_source: str | None
    rent_usd_per_hour: float | None
    rent_source: str | None
    reason: str | None = None

    def record(self) -> dict[str, object]:
        """summary.json `cost`: the basis and where each number came from."""
        return {"basis": self.basis, "chip_price_usd": self.purchase_usd, "chip_price_source": self.purchase_source,
                "rent_usd_per_chip_hour": self.rent_usd_per_hour, "rent_source": self.rent_source,
                "reason": self.reason}


def cost_basis(cost: CostSpec, chip: ChipSpec, file: str | None = None) -> CostBasis:
    """The basis of a run's cost; raises ScenarioError when an explicit `cost.prefer` cannot be met."""
    catalog = chip.price
    where = f"catalog chip {chip.id} price ({catalog.source})" if catalog is not None else None
    purchase_src: str | None = "scenario cost.chip_price_usd"
    rent_src: str | None = "scenario cost.rent_usd_per_chip_hour"
    purchase = cost.chip_price_usd
    if purchase is None and catalog is not None and catalog.purchase_usd is not None:
        purchase, purchase_src = catalog.purchase_usd, where
    rent = cost.rent_usd_per_chip_hour
    if rent is None and catalog is not None and catalog.rent_usd_per_hour is not None:
        rent, rent_src = catalog.rent_usd_per_hour, where

    def basis(kind: Literal["rent", "purchase"] | None, reason: str | None = None) -> CostBasis:
        return CostBasis(kind, purchase, purchase_src if purchase is not None else None,
                         rent, rent_src if rent is not None else None, reason)

    no_price = (catalog.source if catalog is not None and catalog.purchase_usd is None
                and catalog.rent_usd_per_hour is None else f"chip {chip.id} has no price in the catalog")
    if cost.prefer == "rent":
        if rent is None:
            raise ScenarioError("cost.prefer", f"'rent' but chip {chip.id} has no rental rate; set "
                                "cost.rent_usd_per_chip_hour", file)
        return basis("rent")
    if cost.prefer == "purchase":
        if purchase is None:
            raise ScenarioError("cost.prefer", f"'purchase' but chip {chip.id} has no purchase price; set "
                                "cost.chip_price_usd", file)
        if chip.power is None:
            raise ScenarioError("cost.prefer", f"'purchase' needs the energy bill but chip {chip.id} has no power "
                                "figures; use cost.prefer: rent with cost.rent_usd_per_chip_hour", file)
        return basis("purchase")
    if purchase is not None and chip.power is not None:
        return basis("purchase")
    if rent is not None:
        return basis("rent")
    if purchase is not None:
        return basis(None, f"purchase price known but chip {chip.id} has no power figures for the energy bill")
    return basis(None, no_price)
