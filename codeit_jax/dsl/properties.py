"""DSL primitives: properties (see codeit_jax.dsl for the module order)."""
