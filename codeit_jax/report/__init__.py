"""The HTML report of a run: ``python -m codeit_jax.report --workdir=DIR``.

- ``page``: the page (`write_report`); ``inputs``: the run files it reads; ``curves``: the
  SVG learning curves; ``grids``: ARC grids as PNG data URIs.
"""
