"""One module per experiment; see :mod:`weft.lab._registry` for the contract."""
