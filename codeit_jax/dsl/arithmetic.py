"""DSL primitives: arithmetic (see codeit_jax.dsl for the module order)."""
