"""``seganypet serve``: the interactive session over HTTP, for a browser viewer or a script.

- :func:`create_app` (:mod:`.app`): the FastAPI application: studies, prompts, masks, statistics.
- :class:`Journal` (:mod:`.journal`): every interaction is written to disk before it is applied,
  and replayed when the study is opened again, so a crash loses no work.
- :class:`Client` (:mod:`.client`): a small Python client over ``urllib``.
"""

from seganypet.server.journal import Journal

__all__ = ["Journal", "create_app"]


def __getattr__(name: str):
    if name == "create_app":  # FastAPI is imported only when the app is wanted
        from seganypet.server.app import create_app

        return create_app
    raise AttributeError(name)
