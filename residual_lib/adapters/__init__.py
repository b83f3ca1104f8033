"""Model adapters: one per model family, each exposing `ResidualModel`."""
