"""DSL primitives: objects (see codeit_jax.dsl for the module order)."""
