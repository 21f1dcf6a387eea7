"""DSL primitives: grids (see codeit_jax.dsl for the module order)."""
