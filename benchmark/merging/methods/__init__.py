"""The built-in merge methods; importing this package registers them."""

from benchmark.merging.methods import (  # noqa: F401
    adamerging,
    averaging,
    consensus,
    dare,
    fisher,
    regmean,
    subspace,
    surgery,
    ties,
    wudi,
)
