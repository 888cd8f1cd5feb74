"""One module per scenario; each exposes ``run(context: Context) -> list[Result]``.

bench/run.py imports every module here in name order, so adding a scenario is adding a file.
"""
