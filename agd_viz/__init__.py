"""AGD Explorer: Automatic Gradient Descent (Bernstein et al. 2023) and tools to watch it train.

`from agd_viz import AGD` gives the optimiser. Torch is imported lazily so that light modules
(the run store, the job manager) load fast in the app and in worker start-up.
"""

__all__ = ["AGD", "make_optimizer"]
__version__ = "0.2.0"


def __getattr__(name):
    if name in __all__:
        from agd_viz import optim

        return getattr(optim, name)
    raise AttributeError(f"module 'agd_viz' has no attribute {name!r}")
