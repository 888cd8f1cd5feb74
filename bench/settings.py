"""Settings for the benchmark server: the production settings plus one floor view.

Everything (middleware, database options, persistent connections) comes from kehu.settings, so
the floor view and the endpoint under test are served by the same stack; only the URLconf differs.
"""

from kehu.settings import *  # noqa: F403 -- the point is to inherit every production setting unchanged

ROOT_URLCONF = "bench.urls"

# `kehu serve` runs collectstatic before it starts. Static files are not under test, and the
# vendored assets change under concurrent edits (or refer to files not vendored, such as a
# stylesheet's source map, which the manifest storage refuses), so there is nothing to collect:
# the request path of every view is unchanged.
STATICFILES_FINDERS: list[str] = []
