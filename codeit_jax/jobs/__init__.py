"""Jobs: what ``python -m codeit_jax.main`` dispatches to by ``config.experiment``.

Each job is one function ``run(config, workdir) -> summary`` that checks its config, then calls
into the stages: ``codeit`` (the CodeIt run), ``mutation`` (the mutation baseline),
``check_data`` (every ground-truth program on its task).
"""
