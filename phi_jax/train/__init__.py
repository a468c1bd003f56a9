"""Training: mesh and shardings, optimizer, the jitted step, checkpoints, metrics, inputs and the
loop (`loop.train(config, workdir)`, run by `python -m phi_jax.main`)."""
