"""DSL primitives: functional (see codeit_jax.dsl for the module order)."""
