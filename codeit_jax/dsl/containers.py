"""DSL primitives: containers (see codeit_jax.dsl for the module order)."""
