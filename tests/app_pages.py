"""Run one page of the app in Streamlit's AppTest on a database named by a link, as a shared link opens it."""

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_page(page: str, db: Path | str, **params: str) -> AppTest:
    """Run `page` on ?db=`db` with more URL parameters; it must end without an exception."""
    app = AppTest.from_file(APP, default_timeout=90)
    app.switch_page(page)
    app.query_params["db"] = str(db)
    for name, value in params.items():
        app.query_params[name] = value
    app.run()
    assert not app.exception, [error.value for error in app.exception]
    return app
