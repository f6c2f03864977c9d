"""The drawing page and its server (needs the ``web`` extra: FastAPI and uvicorn).

``create_app(model_path)`` lives in ``sifir.web.app``; it is not imported here, so that
``import sifir.web`` works without FastAPI installed.
"""
