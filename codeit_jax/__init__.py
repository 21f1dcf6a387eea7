"""codeit_jax: CodeIt (Butt et al., ICML 2024) in JAX/Flax."""

__version__ = "0.1.0"
