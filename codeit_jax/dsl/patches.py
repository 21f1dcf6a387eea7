"""DSL primitives: patches (see codeit_jax.dsl for the module order)."""
