"""Suite-wide test settings."""

from hypothesis import settings

# Hypothesis' per-example deadline measures wall time, which a loaded 2-core CI
# machine stretches; the examples' own work is bounded, so no deadline.
settings.register_profile("sealmq", deadline=None)
settings.load_profile("sealmq")
