"""Real purchase histories for the recommender's evaluations: where they come from and how they become a
generic orders CSV that ``retain import orders --format generic`` reads, as a user would import them.

    python -m bench.datasets completejourney RDA OUT.csv

Each converter prints the ``retain import`` command that imports its output. Nothing here is committed data:

- **Groceries** (Kaggle "Groceries dataset", Heeral Dedhia 2020; the copy in /work/shared/data/groceries
  comes from github.com/gmaldona/FP_Growth-Data_Mining) needs no conversion: ``retain import orders FILE
  --format generic --no-header --map customer=1,date=2,product_name=3 --date-format %d-%m-%Y --basket-by
  customer,date --aggregate-duplicates`` (docs/import.md). :func:`groceries_path` finds the shared copy.
- **The Complete Journey, transactions sample** (84.51° / dunnhumby "Complete Journey 2.0", as shipped in
  the R package ``completejourney`` 1.1.1, github.com/bradleyboehmke/completejourney, licence CC0):
  ``data/transactions_sample.rda`` — 75,000 transaction lines sampled from 2,469 households' purchases in
  2017 (grocery and drug store, 20,902 products). It is a *sample of lines*: a household's history is a
  subset of its real one, so baskets are fragments. Get the file with
  ``git show HEAD:data/transactions_sample.rda`` in a clone of that repository (1.2 MB); reading it needs
  the ``rdata`` package (``pip install rdata``; not a Retain dependency). Price = sales_value / quantity.
"""

from __future__ import annotations

import csv
import sys
from datetime import UTC, datetime
from pathlib import Path

GROCERIES = Path("/work/shared/data/groceries/groceries.csv.gz")
HEADER = ["customer", "order", "sku", "product_name", "date", "qty", "price"]
MAP = "customer=customer,order=order,sku=sku,product_name=product_name,date=date,qty=qty,price=price"


def groceries_path() -> Path:
    """The shared Groceries file (``/work/shared`` beside the checkout, or ``RETAIN_GROCERIES``)."""
    import os

    env = os.environ.get("RETAIN_GROCERIES")
    if env:
        return Path(env)
    for base in (Path(__file__).resolve().parents[1], Path.cwd()):
        for up in (base / ".." / "shared", base / ".." / ".." / "shared", Path("/work/shared")):
            candidate = up / "data" / "groceries" / "groceries.csv.gz"
            if candidate.exists():
                return candidate.resolve()
    return GROCERIES


def convert_completejourney(rda: Path, out: Path) -> int:
    """``transactions_sample.rda`` -> generic CSV (lines with quantity <= 0 or no sales value dropped)."""
    import warnings

    import rdata  # type: ignore[import-not-found]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata warns about R classes it maps to plain data frames
        df = rdata.read_rda(str(rda))["transactions_sample"]
    n = 0
    with open(out, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for row in df.itertuples(index=False):
            qty, value = float(row.quantity), float(row.sales_value)
            if qty <= 0 or value <= 0:
                continue
            when = datetime.fromtimestamp(float(row.transaction_timestamp), UTC).strftime("%Y-%m-%dT%H:%M:%S")
            w.writerow(
                [
                    row.household_id,
                    row.basket_id,
                    row.product_id,
                    "",
                    when,
                    int(qty) or 1,
                    f"{value / qty:.2f}",
                ]
            )
            n += 1
    return n


def main(argv: list[str]) -> None:
    if len(argv) >= 3 and argv[0] == "completejourney":
        n = convert_completejourney(Path(argv[1]), Path(argv[2]))
    else:
        raise SystemExit(__doc__)
    out = argv[-1]
    print(f"{n} lines -> {out}")
    print(f"retain --db sqlite:///DB import orders --format generic --currency USD --map {MAP} {out}")


if __name__ == "__main__":
    main(sys.argv[1:])
