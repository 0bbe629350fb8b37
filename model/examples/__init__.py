"""Example models released with `make release` (docs/model.md)."""
